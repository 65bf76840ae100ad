// The wire protocol without a network: what a client encodes, the server decodes
// to the same batch, in both forms; and the first problem of a bad request is named.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeOpenRequest, decodeRequest, encodeJson, encodeNdjson, ProtocolError } from "./protocol.ts";
import type { Batch } from "./backend.ts";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function batch(): Batch {
  return {
    metadata: { prefix: "alice/p/run", readme: "r", tags: ["t"] },
    params: { lr: 0.1 },
    metrics: { train: ['{"_ts":1,"step":0,"loss":0.5}\n{"_ts":2,"step":1,"loss":"NaN"}'] },
    logs: ['{"_ts":1,"level":"info","message":"hi"}'],
    files: [{ path: "a.txt", size: 2, mime: "text/plain", _ts: 1, data: bytes("hi") }],
    status: { status: "RUNNING", startedAt: 1, heartbeatAt: 1 },
  };
}

test("a batch encoded as NDJSON or JSON decodes to the same records, files and state", () => {
  const envelope = { prefix: "alice/p/run", session: "s1", seq: 7, batch: batch() };
  for (const [form, body] of [["ndjson", encodeNdjson(envelope)], ["json", encodeJson(envelope)]] as const) {
    const request = decodeRequest(bytes(body), form === "ndjson");
    assert.deepEqual([request.prefix, request.session, request.seq], ["alice/p/run", "s1", 7], form);
    const decoded = request.batch();
    const text = (chunks: (string | Uint8Array)[] | undefined): string => (chunks ?? []).map((c) => typeof c === "string" ? c : new TextDecoder().decode(c)).join("\n");
    assert.equal(text(decoded.metrics?.train), '{"_ts":1,"step":0,"loss":0.5}\n{"_ts":2,"step":1,"loss":"NaN"}', form);
    assert.equal(text(decoded.logs), '{"_ts":1,"level":"info","message":"hi"}', form);
    assert.equal(new TextDecoder().decode(decoded.files![0].data), "hi", form);
    assert.deepEqual(decoded.params, { lr: 0.1 }, form);
    assert.equal(decoded.status?.status, "RUNNING", form);
  }
});

test("a bad request is a ProtocolError that names its first problem", () => {
  const cases: [string, RegExp][] = [
    ["{", /Malformed JSON/],
    ['{"prefix":"../x","session":"s","seq":0}', /Invalid prefix/],
    ['{"prefix":"a/b","session":"s","seq":-1}', /Invalid "seq"/],
    ['{"prefix":"a/b","session":"s","seq":0,"batch":{"oops":1}}', /Unknown event kind "batch.oops"/],
    ['{"prefix":"a/b","session":"s","seq":0,"batch":{"metrics":{"m":[{"_ts":1,"step":0,"x":"no"}]}}}', /expected a number/],
  ];
  for (const [body, message] of cases) {
    assert.throws(() => decodeRequest(bytes(body), false).batch(), (e: unknown) => e instanceof ProtocolError && e.status === 400 && message.test(e.message), body);
  }
  assert.throws(() => decodeOpenRequest(bytes('{"prefix":"a/b","sessions":[1]}')), /Invalid "sessions"/);
  assert.deepEqual(decodeOpenRequest(bytes('{"prefix":"a/b","sessions":["s1"]}')), { prefix: "a/b", sessions: ["s1"] });
});
