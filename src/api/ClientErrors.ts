import type { Server } from "node:http"
import type { SecuritySettings } from "./Security.js"

/** Requests Node's own parser rejects (bad bytes, conflicting lengths, oversized headers). */
export const installClientErrorHandler = (server: Server, _settings: SecuritySettings): Server => server
