/* cardvault elements.js: the loader a shop's page includes (docs/elements.md).
 * It mounts the vault's card frame in an iframe and talks to it with
 * postMessage; it never sees a card number, an expiry or a security code,
 * only what the frame chooses to post: brand, completeness, field errors,
 * and after tokenize the token with brand, last 4 digits and expiry, and a
 * security-code hold's {id, expires_at, uses} (mountCvc, or mount with
 * holdCvc: true; the hold option sets its uses and lifetime). */
(function () {
  'use strict';
  if (window.CardVault) return;

  var KEY_RE = /^pk_[0-9A-Za-z]{43}([0-9A-Za-z]{6})?$/;
  var TOKEN_RE = /^tok_[0-9A-Za-z]{22}$/;
  var TOKENIZE_TIMEOUT_MS = 30000;
  var HOLD_RE = /^hold_[a-z0-9]{1,16}_[0-9A-Za-z]{24}$/;
  /* document.currentScript exists only while this file runs. */
  var script = document.currentScript;
  var defaultVault = null;
  try {
    if (script && script.src) defaultVault = new URL(script.src).origin;
  } catch (e) { defaultVault = null; }

  function fail(code, message) {
    var err = new Error(message);
    err.code = code;
    return err;
  }

  function nonce() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function target(where) {
    var el = typeof where === 'string' ? document.querySelector(where) : where;
    if (!el || el.nodeType !== 1) throw fail('invalid_target', 'mount: no such element');
    return el;
  }

  /* opts.hold: {uses, ttl_seconds}, each an integer from 1 to 86400 when
   * given; anything else is the integrator's mistake, told at mount. */
  function holdOptions(h) {
    if (h === undefined || h === null) return null;
    if (typeof h !== 'object') throw fail('invalid_hold', 'mount: hold must be {uses, ttl_seconds}');
    var out = {};
    Object.keys(h).forEach(function (k) {
      var v = h[k];
      if (k !== 'uses' && k !== 'ttl_seconds') throw fail('invalid_hold', 'mount: hold has no option ' + k);
      if (typeof v !== 'number' || Math.floor(v) !== v || v < 1 || v > 86400) {
        throw fail('invalid_hold', 'mount: hold.' + k + ' must be an integer from 1 to 86400');
      }
      out[k] = v;
    });
    return out;
  }

  function Element(vault, key, kind, where, opts) {
    var self = this;
    var frameNonce = nonce();
    var params = new URLSearchParams();
    params.set('key', key);
    params.set('origin', window.location.origin);
    params.set('nonce', frameNonce);
    if (opts.title) params.set('title', String(opts.title));
    if (opts.lang) params.set('lang', String(opts.lang));
    if (kind === 'cvc') {
      if (!TOKEN_RE.test(String(opts.token || ''))) throw fail('invalid_token', 'mountCvc: token must be tok_...');
      params.set('token', opts.token);
      if (opts.brand) params.set('brand', String(opts.brand));
    }
    var iframe = document.createElement('iframe');
    iframe.src = vault + '/elements/' + kind + '?' + params.toString();
    iframe.title = opts.title ? String(opts.title) : (kind === 'cvc' ? 'Security code' : 'Card details');
    iframe.setAttribute('frameborder', '0');
    iframe.setAttribute('scrolling', 'no');
    iframe.setAttribute('allowtransparency', 'true');
    iframe.style.border = '0';
    iframe.style.width = '100%';
    iframe.style.display = 'block';
    iframe.style.overflow = 'hidden';
    iframe.style.height = kind === 'cvc' ? '90px' : '230px';
    var listeners = {};
    var pending = {};
    var seq = 0;
    var ready = false;
    var queue = [];
    var style = opts.style || null;
    /* card frame: after tokenize, hold the typed security code for the relay */
    var holdCvc = kind === 'card' && opts.holdCvc === true;
    /* how many relays the hold serves and how long it lives (the vault's
     * defaults, 1 and 300 s, when absent; the operator's maximums apply) */
    var holdLimits = holdOptions(opts.hold);

    /* Only a well-formed hold reference goes to the page: its id, expiry and uses. */
    function holdOf(h) {
      if (!h || typeof h !== 'object' || !HOLD_RE.test(String(h.id))) return null;
      return { id: String(h.id), expires_at: String(h.expires_at), uses: Number(h.uses) };
    }

    function emit(type, payload) {
      (listeners[type] || []).slice().forEach(function (fn) {
        try { fn(payload); } catch (e) { setTimeout(function () { throw e; }); }
      });
    }

    function post(msg) {
      msg.cv = 1;
      msg.nonce = frameNonce;
      if (!ready) { queue.push(msg); return; }
      iframe.contentWindow.postMessage(msg, vault);
    }

    function onMessage(event) {
      if (event.source !== iframe.contentWindow || event.origin !== vault) return;
      var m = event.data;
      if (!m || typeof m !== 'object' || m.cv !== 1 || m.nonce !== frameNonce) return;
      switch (m.type) {
        case 'ready':
          ready = true;
          if (style) post({ type: 'style', style: style });
          queue.splice(0).forEach(function (q) { iframe.contentWindow.postMessage(q, vault); });
          emit('ready', {});
          break;
        case 'change':
          emit('change', { brand: m.brand, complete: !!m.complete, empty: !!m.empty,
                           error: m.error || null, cvcEmpty: !!m.cvcEmpty });
          break;
        case 'resize':
          if (typeof m.height === 'number' && m.height > 0 && m.height < 2000) iframe.style.height = Math.ceil(m.height) + 'px';
          break;
        case 'result':
          if (pending[m.id]) {
            var p = pending[m.id];
            delete pending[m.id];
            clearTimeout(p.timer);
            var hold = holdOf(m.cvc_hold);
            if (kind === 'cvc') {
              if (hold) p.resolve({ cvc_hold: hold });
              else p.reject(fail('api_error', 'The security-code frame gave no hold.'));
            } else if (holdCvc && !hold) {
              p.reject(fail('api_error', 'The card frame gave no security-code hold.'));
            } else {
              var r = { token: m.token, brand: m.brand, last4: m.last4,
                        exp_month: m.exp_month, exp_year: m.exp_year };
              if (holdCvc) r.cvc_hold = hold;
              p.resolve(r);
            }
          }
          break;
        case 'error':
          if (m.id !== null && m.id !== undefined && pending[m.id]) {
            var q = pending[m.id];
            delete pending[m.id];
            clearTimeout(q.timer);
            q.reject(fail(String(m.code), String(m.message)));
          } else {
            emit('error', { code: String(m.code), message: String(m.message) });
          }
          break;
        default:
          break;
      }
    }
    window.addEventListener('message', onMessage);
    target(where).appendChild(iframe);

    this.on = function (type, fn) { (listeners[type] = listeners[type] || []).push(fn); return self; };
    this.off = function (type, fn) {
      listeners[type] = (listeners[type] || []).filter(function (f) { return f !== fn; });
      return self;
    };
    this.tokenize = function () {
      return new Promise(function (resolve, reject) {
        var id = 't' + (++seq);
        var timer = setTimeout(function () {
          if (pending[id]) { delete pending[id]; reject(fail('timeout', 'The card frame did not answer in time.')); }
        }, TOKENIZE_TIMEOUT_MS);
        pending[id] = { resolve: resolve, reject: reject, timer: timer };
        var msg = { type: 'tokenize', id: id };
        if (holdCvc) msg.holdCvc = true;
        if (holdLimits && (holdCvc || kind === 'cvc')) msg.hold = holdLimits;
        post(msg);
      });
    };
    this.setStyle = function (s) { style = s; post({ type: 'style', style: s }); return self; };
    this.clear = function () { post({ type: 'clear' }); return self; };
    this.destroy = function () {
      window.removeEventListener('message', onMessage);
      Object.keys(pending).forEach(function (id) {
        clearTimeout(pending[id].timer);
        pending[id].reject(fail('destroyed', 'The card frame was removed.'));
      });
      pending = {};
      listeners = {};
      if (iframe.parentNode) iframe.parentNode.removeChild(iframe);
    };
    this.iframe = iframe;
  }

  function CardVault(config) {
    if (!(this instanceof CardVault)) return new CardVault(config);
    config = config || {};
    if (!KEY_RE.test(String(config.key || ''))) throw fail('invalid_key', 'CardVault: key must be a publishable key (pk_...)');
    var vault = config.vault ? new URL(String(config.vault)).origin : defaultVault;
    if (!vault || vault === 'null') throw fail('invalid_vault', 'CardVault: give vault (the vault origin)');
    var key = config.key;
    this.mount = function (where, opts) { return new Element(vault, key, 'card', where, opts || {}); };
    this.mountCvc = function (where, opts) { return new Element(vault, key, 'cvc', where, opts || {}); };
  }

  window.CardVault = CardVault;
})();
