// Helpers shared by the conformance tests.
import assert from 'node:assert/strict';

import { parseSSEStream } from '@cloudflare/sandbox';

// Awaits `promise`, which must reject; runs `check` on the error and returns it.
export async function rejectsWith(promise, check) {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error, 'expected the call to throw');
  check(error);
  return error;
}

// Every event of an SSE stream, parsed by the client's own parser.
export async function events(stream) {
  const out = [];
  for await (const ev of parseSSEStream(stream)) out.push(ev);
  return out;
}
