// Stand-in for the Workers-only module `cloudflare:workers`. The package root of
// @cloudflare/sandbox imports these names (for its Durable Object classes), but
// SandboxClient and the domain clients never call them.
export class DurableObject {}
export class WorkerEntrypoint {}
export class RpcTarget {}
export class WorkflowEntrypoint {}
export const env = {};
export const tracing = {};
export default {};
