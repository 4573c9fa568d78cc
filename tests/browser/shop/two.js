// Two card mounts on one page, each with its own button: window.__shop.a and .b hold what each
// mount reported, so the tests can check that one mount never answers for the other.
(function () {
  'use strict';
  const cv = CardVault({ key: '{{KEY}}' });
  window.__shop = {};
  ['a', 'b'].forEach(function (side) {
    const rec = { ready: false, changes: [], results: [], errors: [] };
    window.__shop[side] = rec;
    const card = cv.mount('#card-' + side, { title: 'Card details, card ' + side.toUpperCase() });
    card.on('ready', function () { rec.ready = true; });
    card.on('change', function (e) { rec.changes.push(e); });
    document.getElementById('pay-' + side).addEventListener('click', async function () {
      try {
        rec.results.push(await card.tokenize());
      } catch (err) {
        rec.errors.push({ code: err && err.code, message: String(err && err.message) });
      }
    });
  });
})();
