// The test shop's checkout script: mounts the card fields, asks for a token when the shop's own
// button is pressed and sends only that token to the shop's back end (POST /checkout). It also
// keeps what it got in window.__shop for the tests.
(function () {
  'use strict';
  const shop = { ready: false, changes: [], results: [], errors: [], answers: [] };
  window.__shop = shop;
  const form = document.getElementById('checkout');
  const pay = document.getElementById('pay');
  const result = document.getElementById('result');

  const cv = CardVault({ key: '{{KEY}}' });
  // ?hold=1: the card frame also holds the typed security code for the relay (holdCvc).
  // ?uses=N&ttl=S: the hold's uses and lifetime (the hold option).
  const q = new URLSearchParams(location.search);
  const holdCvc = q.get('hold') === '1';
  const limits = q.get('uses') ? { uses: Number(q.get('uses')), ttl_seconds: Number(q.get('ttl')) } : undefined;
  const card = cv.mount('#card', { title: 'Card details', holdCvc: holdCvc, hold: limits });
  card.on('ready', function () { shop.ready = true; });
  card.on('change', function (e) { shop.changes.push(e); });

  form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    pay.disabled = true;
    result.className = 'result';
    result.textContent = 'Processing…';
    try {
      const r = await card.tokenize();
      shop.results.push(r);
      const resp = await fetch('/checkout', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(r.cvc_hold ? { token: r.token, cvc_hold: r.cvc_hold.id } : { token: r.token }),
      });
      const answer = await resp.json();
      shop.answers.push(answer);
      result.textContent = 'Paid with ' + r.brand + ' ending in ' + r.last4 + ' (' + r.token + ')';
    } catch (err) {
      shop.errors.push({ code: err && err.code, message: String(err && err.message) });
      result.className = 'result error';
      result.textContent = 'Payment not sent: ' + (err && err.message);
    } finally {
      pay.disabled = false;
    }
  });
})();
