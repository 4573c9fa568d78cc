/* cardvault frame.js: the card frame's own script, served by the vault on
 * its own origin (docs/elements.md). The card number, expiry and security
 * code typed here never leave this document except in same-origin calls:
 * POST /v1/tokens (number, expiry, name; never the security code) and, for
 * the security code only, POST /v1/tokens/{token}/cvc-hold (the security-code
 * frame always; the card frame when the loader asks for a hold). The parent
 * page gets only brand, completeness, field errors and, after tokenize,
 * {token, brand, last4, exp_month, exp_year} and/or a hold's {id, expires_at,
 * uses}; every message goes to the exact parent origin the vault checked
 * against the key's list. */
(function () {
  'use strict';

  var data = document.body.dataset;
  var MODE = data.mode === 'cvc' ? 'cvc' : 'card';
  var KEY = data.key;
  var PARENT = data.origin;
  var NONCE = data.nonce;
  var JA = data.labels === 'ja';
  var SAVED_BRAND = data.brand || 'unknown';
  var SAVED_TOKEN = data.token || '';

  var TEXT = JA ? {
    incomplete_number: 'カード番号が不完全です。',
    invalid_number: 'カード番号が正しくありません。',
    incomplete_expiry: '有効期限が不完全です。',
    invalid_expiry: '有効期限が正しくありません。',
    expired_card: 'カードの有効期限が切れています。',
    incomplete_cvc: 'セキュリティコードが不完全です。',
    invalid_cvc: 'セキュリティコードが正しくありません。',
    invalid_name: 'カード名義が正しくありません。',
    incomplete: 'カード情報を確認してください。',
    busy: '処理中です。',
    network_error: 'カード情報を送信できませんでした。もう一度お試しください。',
    hold_failed: 'セキュリティコードを送信できませんでした。もう一度お試しください。',
    invalid_style: 'スタイル指定の一部を無視しました: '
  } : {
    incomplete_number: 'Your card number is incomplete.',
    invalid_number: 'Your card number is invalid.',
    incomplete_expiry: "Your card's expiry date is incomplete.",
    invalid_expiry: "Your card's expiry date is invalid.",
    expired_card: 'Your card has expired.',
    incomplete_cvc: "Your card's security code is incomplete.",
    invalid_cvc: "Your card's security code is invalid.",
    invalid_name: 'The name on the card is invalid.',
    incomplete: 'Check the card details.',
    busy: 'A tokenize request is already running.',
    network_error: 'The card details could not be sent. Try again.',
    hold_failed: 'The security code could not be sent. Try again.',
    invalid_style: 'A style property was ignored: '
  };

  /* Brands, as the vault's card.c decides them, with the lengths each issues. */
  function between(digits, n, lo, hi) {
    if (digits.length < n) return false;
    var v = parseInt(digits.slice(0, n), 10);
    return v >= lo && v <= hi;
  }
  var BRANDS = [
    { id: 'visa', name: 'Visa', lengths: [13, 16, 19], cvc: 3,
      test: function (d) { return d[0] === '4'; } },
    { id: 'mastercard', name: 'Mastercard', lengths: [16], cvc: 3,
      test: function (d) { return between(d, 2, 51, 55) || between(d, 4, 2221, 2720); } },
    { id: 'amex', name: 'American Express', lengths: [15], cvc: 4, gaps: [4, 10],
      test: function (d) { return /^3[47]/.test(d); } },
    { id: 'jcb', name: 'JCB', lengths: [16, 17, 18, 19], cvc: 3,
      test: function (d) { return between(d, 4, 3528, 3589); } },
    { id: 'discover', name: 'Discover', lengths: [16, 17, 18, 19], cvc: 3,
      test: function (d) { return /^6011/.test(d) || between(d, 3, 644, 649) || /^65/.test(d); } },
    { id: 'diners', name: 'Diners Club', lengths: [14, 15, 16, 17, 18, 19], cvc: 3,
      test: function (d) { return between(d, 3, 300, 305) || /^3095|^3[689]/.test(d); } },
    { id: 'unionpay', name: 'UnionPay', lengths: [16, 17, 18, 19], cvc: 3,
      test: function (d) { return /^62/.test(d); } }
  ];
  var UNKNOWN = { id: 'unknown', name: '', lengths: [12, 13, 14, 15, 16, 17, 18, 19], cvc: 3 };

  function brandOf(digits) {
    for (var i = 0; i < BRANDS.length; i++) if (BRANDS[i].test(digits)) return BRANDS[i];
    return UNKNOWN;
  }
  function brandById(id) {
    for (var i = 0; i < BRANDS.length; i++) if (BRANDS[i].id === id) return BRANDS[i];
    return null;
  }

  function luhn(digits) {
    var sum = 0, twice = false;
    for (var i = digits.length - 1; i >= 0; i--) {
      var d = digits.charCodeAt(i) - 48;
      if (twice) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
      twice = !twice;
    }
    return sum % 10 === 0;
  }

  function onlyDigits(s) { return String(s).replace(/\D+/g, ''); }

  var form = document.getElementById('cv-form');
  var fields = {
    name: document.getElementById('cv-name'),
    number: document.getElementById('cv-number'),
    exp: document.getElementById('cv-exp'),
    cvc: document.getElementById('cv-cvc')
  };
  var order = MODE === 'cvc' ? ['cvc'] : ['name', 'number', 'exp', 'cvc'];
  var errorIds = { name: 'name', number: 'number', exp: 'expiry', cvc: 'cvc' };
  var brandEl = document.getElementById('cv-brand');
  var hintEl = document.getElementById('cv-cvc-hint');
  var touched = {};
  var tokenizing = false;
  var style = null;
  var inFrame = window.parent !== window;

  function post(msg) {
    if (!inFrame) return;
    msg.cv = 1;
    msg.nonce = NONCE;
    window.parent.postMessage(msg, PARENT);
  }

  /* ---- formatting ---- */

  function groupNumber(digits, brand) {
    var gaps = brand.gaps || (brand.id === 'diners' && digits.length === 14 ? [4, 10] : [4, 8, 12, 16]);
    var out = '';
    for (var i = 0; i < digits.length; i++) {
      if (gaps.indexOf(i) >= 0 && i > 0) out += ' ';
      out += digits[i];
    }
    return out;
  }

  /* Rewrites an input's value and keeps the caret after the same digit. */
  function rewrite(input, value) {
    if (input.value === value) return;
    var caret = input.selectionStart === null ? input.value.length : input.selectionStart;
    var before = onlyDigits(input.value.slice(0, caret)).length;
    input.value = value;
    var pos = 0, seen = 0;
    while (pos < value.length && seen < before) {
      if (/\d/.test(value[pos])) seen++;
      pos++;
    }
    if (document.activeElement === input) input.setSelectionRange(pos, pos);
  }

  function formatNumber(event) {
    var digits = onlyDigits(fields.number.value).slice(0, 19);
    rewrite(fields.number, groupNumber(digits, brandOf(digits)));
    if (event && digits.length === maxLength(brandOf(digits))) touched.number = true;
  }

  function maxLength(brand) { return brand.lengths[brand.lengths.length - 1]; }

  /* "MM / YY" as the shopper types; autofill forms (MM/YY, MM/YYYY, YYYY-MM) are read too. */
  function formatExp(event) {
    var raw = fields.exp.value;
    var iso = /^\s*(\d{4})-(\d{1,2})\s*$/.exec(raw);
    if (iso) raw = iso[2] + '/' + iso[1];
    var deleting = event && event.inputType && event.inputType.indexOf('delete') === 0;
    var m = /^\s*(\d{1,2})\s*[\/\-. ]\s*(\d{0,4})\s*$/.exec(raw);
    var month, year;
    if (m && !deleting) {
      month = m[1].length === 1 ? '0' + m[1] : m[1];
      year = m[2];
    } else {
      var d = onlyDigits(raw).slice(0, 6);
      if (d.length >= 1 && d[0] > '1') d = '0' + d;
      month = d.slice(0, 2);
      year = d.slice(2);
    }
    var value = month;
    if (year.length > 0 || (month.length === 2 && !deleting)) value += ' / ' + year;
    rewrite(fields.exp, value.slice(0, 9));
    if (event && year.length === 2 && !deleting) touched.exp = true;
  }

  function formatCvc(input) {
    rewrite(input, onlyDigits(input.value).slice(0, 4));
  }

  /* ---- validation ---- */

  function parseExp() {
    var m = /^(\d{2}) \/ (\d{2}|\d{4})$/.exec(fields.exp.value);
    if (!m) return null;
    var month = parseInt(m[1], 10);
    var year = parseInt(m[2], 10);
    if (m[2].length === 2) year += 2000;
    return { month: month, year: year };
  }

  function cvcLengths() {
    if (MODE === 'cvc') {
      var saved = brandById(SAVED_BRAND);
      return saved ? [saved.cvc] : [3, 4];
    }
    return [brandOf(onlyDigits(fields.number.value)).cvc];
  }

  /* The error of one field as it stands, or null. */
  function fieldError(key) {
    var v = fields[key].value;
    if (key === 'name') {
      if (v === '') return null;
      var bytes = new TextEncoder().encode(v).length;
      if (bytes > 128 || /[\u0000-\u001f\u007f-\u009f]/.test(v) || /\d{12,}/.test(v) || v.trim() === '') return 'invalid_name';
      return null;
    }
    if (key === 'number') {
      var digits = onlyDigits(v);
      var brand = brandOf(digits);
      var allowed = brand.lengths.indexOf(digits.length) >= 0;
      if (allowed && luhn(digits)) return null;
      if (digits.length < brand.lengths[0]) return 'incomplete_number';
      if (allowed || digits.length >= maxLength(brand)) return 'invalid_number';
      return 'incomplete_number';
    }
    if (key === 'exp') {
      if (!/^\d{2} \/ (\d{2}|\d{4})$/.test(v)) return 'incomplete_expiry';
      var e = parseExp();
      if (e.month < 1 || e.month > 12) return 'invalid_expiry';
      var now = new Date();
      var ahead = (e.year - now.getFullYear()) * 12 + (e.month - (now.getMonth() + 1));
      if (ahead < 0) return 'expired_card';
      if (ahead > 240) return 'invalid_expiry';
      return null;
    }
    var c = onlyDigits(v);
    var lengths = cvcLengths();
    if (c.length < Math.min.apply(null, lengths)) return 'incomplete_cvc';
    if (lengths.indexOf(c.length) < 0) return 'invalid_cvc';
    return null;
  }

  function state(showAll) {
    var first = null, complete = true, empty = true;
    order.forEach(function (key) {
      var input = fields[key];
      if (input.value !== '') empty = false;
      var err = fieldError(key);
      if (err !== null) complete = false;
      var shown = (showAll || touched[key]) && input.value !== '' ? err : null;
      if (showAll && err !== null) shown = err;
      setError(key, shown);
      if (shown && !first) first = { field: errorIds[key], code: shown, message: TEXT[shown] };
    });
    var cvcEmpty = fields.cvc.value === '' &&
      (MODE === 'cvc' || (fieldError('number') === null && fieldError('exp') === null));
    if (hintEl) hintEl.hidden = !(cvcEmpty && MODE === 'card');
    form.setAttribute('data-cvc-empty', cvcEmpty && MODE === 'card' ? 'true' : 'false');
    return { complete: complete, empty: empty, error: first, cvcEmpty: cvcEmpty };
  }

  function setError(key, code) {
    var input = fields[key];
    var el = document.getElementById(input.id + '-error');
    var text = code ? TEXT[code] : '';
    if (el.textContent !== text) el.textContent = text;
    input.setAttribute('aria-invalid', code ? 'true' : 'false');
  }

  function currentBrand() {
    if (MODE === 'cvc') return SAVED_BRAND;
    return brandOf(onlyDigits(fields.number.value)).id;
  }

  function showBrand() {
    var id = currentBrand();
    var b = brandById(id);
    brandEl.setAttribute('data-brand', id);
    brandEl.textContent = b ? b.name : '';
  }

  var lastChange = '';
  function changed(showAll) {
    showBrand();
    var s = state(showAll);
    applyStyle();
    var msg = { type: 'change', brand: currentBrand(), complete: s.complete, empty: s.empty,
                error: s.error, cvcEmpty: s.cvcEmpty };
    var key = JSON.stringify(msg);
    if (key !== lastChange) { lastChange = key; post(msg); }
    resize();
  }

  /* ---- style (allow-list, applied through CSSOM) ---- */

  var LENGTH = '(?:0|-?\\d{1,3}(?:\\.\\d{1,3})?(?:px|em|rem|%))';
  var COLOR = /^(?:#[0-9a-fA-F]{3,4}|#[0-9a-fA-F]{6}|#[0-9a-fA-F]{8}|rgba?\(\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*(?:,\s*(?:0|1|0?\.\d{1,3})\s*)?\)|[a-zA-Z]{3,30})$/;
  var PROPS = {
    color: { css: 'color', re: COLOR },
    backgroundColor: { css: 'background-color', re: COLOR },
    borderColor: { css: 'border-color', re: COLOR },
    fontFamily: { css: 'font-family', re: /^[A-Za-z0-9 ,'"-]{1,100}$/ },
    fontSize: { css: 'font-size', re: new RegExp('^' + LENGTH + '$') },
    fontWeight: { css: 'font-weight', re: /^(?:normal|bold|[1-9]00)$/ },
    letterSpacing: { css: 'letter-spacing', re: new RegExp('^(?:normal|' + LENGTH + ')$') },
    lineHeight: { css: 'line-height', re: new RegExp('^(?:normal|\\d(?:\\.\\d{1,3})?|' + LENGTH + ')$') },
    padding: { css: 'padding', re: new RegExp('^' + LENGTH + '(?: ' + LENGTH + '){0,3}$') },
    borderRadius: { css: 'border-radius', re: new RegExp('^' + LENGTH + '$') },
    borderWidth: { css: 'border-width', re: new RegExp('^' + LENGTH + '$') }
  };
  var VARIANTS = ['base', 'invalid', 'focus'];

  /* Keeps only allow-listed properties with valid values; reports the rest. */
  function cleanStyle(raw) {
    var clean = {}, ignored = [];
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return { style: clean, ignored: ['style'] };
    Object.keys(raw).forEach(function (variant) {
      var group = raw[variant];
      if (VARIANTS.indexOf(variant) < 0 || !group || typeof group !== 'object' || Array.isArray(group)) {
        ignored.push(String(variant).slice(0, 40));
        return;
      }
      clean[variant] = {};
      Object.keys(group).forEach(function (prop) {
        var v = group[prop];
        var spec = Object.prototype.hasOwnProperty.call(PROPS, prop) ? PROPS[prop] : null;
        if (spec && typeof v === 'string' && v.length <= 100 && spec.re.test(v)) clean[variant][prop] = v;
        else ignored.push(String(variant).slice(0, 20) + '.' + String(prop).slice(0, 40));
      });
    });
    return { style: clean, ignored: ignored };
  }

  function applyStyle() {
    if (!style) return;
    order.forEach(function (key) {
      var input = fields[key];
      Object.keys(PROPS).forEach(function (p) { input.style.removeProperty(PROPS[p].css); });
      var layers = ['base'];
      if (input.getAttribute('aria-invalid') === 'true') layers.push('invalid');
      if (document.activeElement === input) layers.push('focus');
      layers.forEach(function (layer) {
        var group = style[layer] || {};
        Object.keys(group).forEach(function (p) { input.style.setProperty(PROPS[p].css, group[p]); });
      });
    });
  }

  function setStyle(raw) {
    var r = cleanStyle(raw);
    style = r.style;
    applyStyle();
    if (r.ignored.length > 0) post({ type: 'error', id: null, code: 'invalid_style', message: TEXT.invalid_style + r.ignored.join(', ') });
    resize();
  }

  /* ---- size ---- */

  var lastHeight = 0;
  function resize() {
    var h = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (h !== lastHeight && h > 0) { lastHeight = h; post({ type: 'resize', height: h }); }
  }

  /* ---- tokenize ---- */

  function randomKey() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }

  function clearFields() {
    order.forEach(function (key) { fields[key].value = ''; touched[key] = false; });
    changed(false);
  }

  /* One same-origin JSON POST with the frame's key, as the vault's browser
   * rules want it (docs/elements.md): the parent page's origin named in
   * CardVault-Frame-Origin, no cookies, no cache, no referrer. Calls back
   * with {status, json} (json null when the answer was not JSON), or with
   * null on a network failure. */
  function call(path, body, idempotent, done) {
    var headers = { 'Authorization': 'Bearer ' + KEY, 'Content-Type': 'application/json',
                    /* the shop page this frame serves: its tokenize quota's key */
                    'CardVault-Frame-Origin': PARENT };
    if (idempotent) headers['Idempotency-Key'] = randomKey();
    fetch(path, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
      redirect: 'error'
    }).then(function (res) {
      return res.json().then(function (j) { return { status: res.status, json: j }; },
                             function () { return { status: res.status, json: null }; });
    }).then(done, function () { done(null); });
  }

  function apiError(id, r, fallback) {
    var err = r && r.json && r.json.error ? r.json.error : {};
    if (r === null) post({ type: 'error', id: id, code: 'network_error', message: TEXT[fallback] });
    else post({ type: 'error', id: id, code: String(err.code || 'api_error'),
                message: String(err.message || TEXT[fallback]) });
  }

  /* Hands the code to POST /v1/tokens/{token}/cvc-hold and calls back with
   * only what the parent may see of the answer, {id, expires_at, uses}, or
   * with null after posting the error. The code is read from the field here
   * and nowhere else; the request body is dropped once sent. */
  function holdCvc(id, token, limits, done) {
    var body = { cvc: onlyDigits(fields.cvc.value) };
    if (limits.uses) body.uses = limits.uses;
    if (limits.ttl_seconds) body.ttl_seconds = limits.ttl_seconds;
    call('/v1/tokens/' + encodeURIComponent(token) + '/cvc-hold', body, false, function (r) {
      body = null;
      var j = r && r.json;
      if (r && r.status === 201 && j && j.object === 'cvc_hold' && typeof j.id === 'string') {
        done({ id: j.id, expires_at: String(j.expires_at), uses: Number(j.uses) });
        return;
      }
      apiError(id, r, 'hold_failed');
      done(null);
    });
  }

  /* The parent's hold limits, checked again here: only integers from 1 to
   * 86400 go to the vault (which applies its own maximums). */
  function holdLimits(h) {
    var out = {};
    if (!h || typeof h !== 'object') return out;
    ['uses', 'ttl_seconds'].forEach(function (k) {
      var v = h[k];
      if (typeof v === 'number' && Math.floor(v) === v && v >= 1 && v <= 86400) out[k] = v;
    });
    return out;
  }

  function tokenize(id, wantHold, limits) {
    if (tokenizing) { post({ type: 'error', id: id, code: 'busy', message: TEXT.busy }); return; }
    order.forEach(function (key) { touched[key] = true; });
    var s = state(true);
    changed(true);
    if (!s.complete) {
      post({ type: 'error', id: id, code: 'incomplete', message: s.error ? s.error.message : TEXT.incomplete });
      return;
    }
    tokenizing = true;
    if (MODE === 'cvc') {
      /* The saved card's code, held by the vault for the relay; the parent
       * gets the hold's reference, never the code. */
      holdCvc(id, SAVED_TOKEN, limits, function (hold) {
        tokenizing = false;
        if (hold === null) return; /* the error is posted; the code stays for a retry */
        post({ type: 'result', id: id, cvc_hold: hold });
        clearFields();
      });
      return;
    }
    var exp = parseExp();
    var body = { pan: onlyDigits(fields.number.value), exp_month: exp.month, exp_year: exp.year };
    if (fields.name.value.trim() !== '') body.cardholder_name = fields.name.value.trim();
    /* The security code is not sent with the card: the vault would only
     * check it and drop it. With wantHold it goes, alone, into a hold. */
    call('/v1/tokens', body, true, function (r) {
      body = null;
      if (!(r && (r.status === 201 || r.status === 200) && r.json && r.json.token)) {
        tokenizing = false;
        apiError(id, r, 'network_error');
        return;
      }
      var j = r.json;
      var result = { type: 'result', id: id, token: j.token, brand: j.brand, last4: j.last4,
                     exp_month: j.exp_month, exp_year: j.exp_year };
      if (!wantHold) {
        tokenizing = false;
        post(result);
        clearFields();
        return;
      }
      holdCvc(id, j.token, limits, function (hold) {
        tokenizing = false;
        if (hold === null) return; /* the error is posted; the fields stay for a retry */
        result.cvc_hold = hold;
        post(result);
        clearFields();
      });
    });
  }

  /* ---- wiring ---- */

  window.addEventListener('message', function (event) {
    if (event.source !== window.parent || event.origin !== PARENT) return;
    var m = event.data;
    if (!m || typeof m !== 'object' || m.cv !== 1 || m.nonce !== NONCE) return;
    if (m.type === 'tokenize' && typeof m.id === 'string' && m.id.length <= 64) tokenize(m.id, m.holdCvc === true, holdLimits(m.hold));
    else if (m.type === 'style') setStyle(m.style);
    else if (m.type === 'clear') clearFields();
  });

  form.addEventListener('submit', function (e) { e.preventDefault(); });

  order.forEach(function (key) {
    var input = fields[key];
    if (!inFrame) { input.disabled = true; return; } /* opened outside a frame: inert */
    function onInput(e) {
      if (key === 'number') formatNumber(e);
      else if (key === 'exp') formatExp(e);
      else if (key === 'cvc') {
        formatCvc(input);
        if (onlyDigits(input.value).length >= Math.max.apply(null, cvcLengths())) touched.cvc = true;
      }
      changed(false);
    }
    input.addEventListener('input', onInput);
    input.addEventListener('change', onInput); /* some autofills fire change only */
    input.addEventListener('blur', function () { touched[key] = true; changed(false); });
    input.addEventListener('focus', function () { applyStyle(); });
  });

  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe(document.documentElement);
  showBrand();
  post({ type: 'ready' });
  changed(false);
})();
