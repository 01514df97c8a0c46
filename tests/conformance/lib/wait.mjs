// Waiting for a condition instead of sleeping for a guessed time.

// Calls predicate() (sync or async) every intervalMs until it returns something
// truthy, and returns that. After timeoutMs throws an Error naming what was
// awaited: `what`, or else the predicate's source, with its last value.
// Timeouts are generous: the suite must pass on a loaded machine.
export async function waitUntil(predicate, what, { timeoutMs = 20000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await predicate();
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new Error(`gave up after ${timeoutMs} ms waiting for ${what ?? predicate.toString()}` +
                      ` (last value: ${String(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
