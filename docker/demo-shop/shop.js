// The demo checkout: the README snippet, plus status text.
(function () {
  'use strict';
  var status = document.getElementById('status');
  var pay = document.getElementById('pay');
  var cv = window.CardVault({ key: window.SHOP_CONFIG.key });
  var card = cv.mount('#card', { title: 'Card details', lang: document.documentElement.lang,
                                 style: { base: { fontSize: '16px', color: '#222' }, invalid: { color: '#b00020' } } });
  card.on('change', function (e) { pay.disabled = !e.complete; });
  card.on('error', function (e) { status.textContent = e.message; });
  document.getElementById('checkout').addEventListener('submit', function (ev) {
    ev.preventDefault();
    pay.disabled = true;
    status.textContent = 'Paying...';
    card.tokenize().then(function (t) {
      return fetch('/orders', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                body: JSON.stringify({ token: t.token }) })
        .then(function (r) { return r.json(); })
        .then(function (o) {
          status.textContent = 'Order ' + o.order + ': ' + t.brand + ' ending ' + t.last4 +
            ' (' + t.exp_month + '/' + t.exp_year + '), token ' + t.token;
        });
    }).catch(function (err) {
      status.textContent = 'Not paid: ' + (err.message || err.code);
      pay.disabled = false;
    });
  });
})();
