// Re-fetches each [data-poll] element's fragment every 2 s and swaps it in when it changed.
// Skipped while the person is typing in it; <details> keep their open/closed state across refreshes.
(function () {
  "use strict";
  function busy(el) {
    var a = document.activeElement;
    if (a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName)) { return true; }
    var fields = el.querySelectorAll("input[type=text], textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value && fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }
  function refresh(el) {
    if (busy(el) || document.hidden) { return; }
    fetch(el.getAttribute("data-poll"), {credentials: "same-origin", headers: {"X-Console-Fragment": "1"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || html === el.getAttribute("data-last") || busy(el)) { return; }
        var open = {};
        el.querySelectorAll("details[data-path]").forEach(function (d) { open[d.getAttribute("data-path")] = d.open; });
        el.innerHTML = html;
        el.setAttribute("data-last", html);
        el.querySelectorAll("details[data-path]").forEach(function (d) {
          var p = d.getAttribute("data-path");
          if (Object.prototype.hasOwnProperty.call(open, p)) { d.open = open[p]; }
        });
      })
      .catch(function () { /* the next poll tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(function (el) {
      setInterval(function () { refresh(el); }, 2000);
    });
  });
})();
