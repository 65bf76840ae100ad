// Applies the saved theme before the page paints (a module script runs too late).
(function () {
  try {
    var theme = JSON.parse(localStorage.getItem("mldash.theme"));
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (_) {
    // No storage: follow the system.
  }
})();
