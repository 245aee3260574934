/**
 * Node.js 21 and later define `globalThis.navigator`; 20 does not. `pg`
 * asks at load time whether it runs in a Cloudflare Worker: finding no
 * navigator, it constructs a `Response`, which loads Node's fetch
 * implementation, 50-70 ms of every CLI start for nothing. The CLI defines
 * what later Node versions define (only the user agent, only where it is
 * missing) before anything loads `pg`. The library leaves globals alone.
 */
const g = globalThis as { navigator?: { userAgent: string } };
g.navigator ??= { userAgent: `Node.js/${process.versions.node.split(".")[0]}` };
