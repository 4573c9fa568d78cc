// Test instrumentation of the shop page (loaded before anything else): records every message the
// page receives, as the page's own script sees it, so the tests can prove that the card fields
// never hand the shop a card number or a security code. Not part of the integration snippet.
(function () {
  'use strict';
  const rec = { messages: [], seenByListeners: 0 };
  window.__cvRecord = rec;
  function text(data) {
    try { return JSON.stringify(data); } catch (e) { return String(data); }
  }
  // First listener of all, capture phase: sees every message whoever it is for.
  window.addEventListener('message', function (e) {
    rec.messages.push({ origin: e.origin, data: text(e.data), time: Date.now() });
  }, true);
  // And every 'message' listener the page adds later (the loader's) is wrapped, to record that
  // it was reached, without changing what it does.
  const add = window.addEventListener;
  const remove = window.removeEventListener;
  const wrappers = new WeakMap();
  window.addEventListener = function (type, fn, opts) {
    if (type === 'message' && typeof fn === 'function') {
      let w = wrappers.get(fn);
      if (!w) {
        w = function (e) {
          rec.seenByListeners += 1;
          return fn.call(this, e);
        };
        wrappers.set(fn, w);
      }
      return add.call(this, type, w, opts);
    }
    return add.call(this, type, fn, opts);
  };
  window.removeEventListener = function (type, fn, opts) {
    if (type === 'message' && typeof fn === 'function' && wrappers.has(fn)) {
      return remove.call(this, type, wrappers.get(fn), opts);
    }
    return remove.call(this, type, fn, opts);
  };
})();
