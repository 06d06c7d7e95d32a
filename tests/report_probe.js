window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push("error: " + (e.message || (e.target && e.target.outerHTML && e.target.outerHTML.slice(0, 80)) || e.type)), true);
window.addEventListener("unhandledrejection", (e) => window.__errors.push("rejection: " + e.reason));
document.addEventListener("securitypolicyviolation", (e) => window.__errors.push("CSP blocked " + e.violatedDirective + " " + e.blockedURI));
const _err = console.error;
console.error = (...a) => { window.__errors.push("console.error: " + a.join(" ")); _err.apply(console, a); };
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const r = {
    images: imgs.length,
    undecoded: imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    sections: Array.from(document.querySelectorAll("section")).map((s) => s.id),
    errors: window.__errors,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    title: document.title,
  };
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
