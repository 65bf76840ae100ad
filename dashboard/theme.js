// @ts-check
// Applies the theme before the page paints (a module script runs too late): the
// saved choice, else the system's. app.js keeps it up to date afterwards.
(function () {
  var theme = null;
  try {
    theme = JSON.parse(localStorage.getItem("mldash.theme") || "null");
  } catch (_) {
    // No storage: follow the system.
  }
  if (theme !== "light" && theme !== "dark") {
    theme = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  document.documentElement.dataset.theme = theme;
})();
