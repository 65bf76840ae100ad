// What require("ml-dash") loads where the runtime cannot require an ES module
// (Node before 20.19 and 22.12, or with --no-experimental-require-module).
throw new Error(
  'ml-dash is ESM only: use import { Experiment } from "ml-dash" (or await import("ml-dash") from CommonJS); Node 20.19+ and 22.12+ also load it with require()',
);
