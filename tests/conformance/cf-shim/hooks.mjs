// ESM resolve hook (Node >= 20.6): maps `cloudflare:workers` to the stub beside
// this file, and retries extensionless relative imports (as @cloudflare/containers'
// dist uses) with ".js".
const STUB = new URL('./cloudflare-workers.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === 'cloudflare:workers') return { url: STUB, shortCircuit: true };
  try {
    return await next(specifier, context);
  } catch (e) {
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && specifier.startsWith('.') &&
        !specifier.endsWith('.js')) {
      return next(`${specifier}.js`, context);
    }
    throw e;
  }
}
