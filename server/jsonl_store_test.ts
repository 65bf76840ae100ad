// The store conformance suite on the JSONL store, each case in a fresh root.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after } from "node:test";
import { JsonlStore } from "./jsonl_store.ts";
import { storeConformance } from "./store_conformance.ts";

const roots: string[] = [];

after(() => {
  for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
});

storeConformance("JsonlStore", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-jsonl-store-"));
  roots.push(root);
  return Promise.resolve(new JsonlStore(root, { pollInterval: 50 }));
});
