/**
 * Optional protection for the HTTP API: API keys, per-client rate limiting, CORS and security
 * headers, each in its own module under `security/`. Every part is off by default (local use) and is
 * switched on from the environment. SECURITY.md describes the threat model and every setting.
 *
 * - `security/settings.ts`   the settings (SecurityConfig) and the public paths
 * - `security/keys.ts`       the `ApiKeyAuth` HttpApi middleware and its `apiKey` scheme, key matching
 * - `security/rateLimit.ts`  bounded per-client token buckets, client addresses, the 429
 * - `security/cors.ts`       CORS for the allowed origins, by the platform's middleware
 * - `security/headers.ts`    security headers, the Swagger UI CSP, private caching of keyed answers
 * - `security/middleware.ts` all of it per server: `SecurityLive` and `ApiKeyAuthLive`
 */
export { API_CSP, securityHeaders } from "./security/headers.js"
export { ApiKeyAuth, Unauthorized } from "./security/keys.js"
export { ApiKeyAuthLive, SecurityLive } from "./security/middleware.js"
export { clientAddress, makeRateLimiter, MAX_TRACKED_CLIENTS } from "./security/rateLimit.js"
export { SecurityConfig, type SecuritySettings } from "./security/settings.js"
