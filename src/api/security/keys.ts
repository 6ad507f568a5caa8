import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, HttpServerResponse } from "@effect/platform"
import { ConfigError, Either, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { invalid } from "../../Config.js"

/**
 * API keys: the `x-api-key` security scheme the HttpApi declares (so /openapi.json lists it), the
 * refusal a missing or wrong key gets, and the constant-time comparison against the accepted keys,
 * which are held as SHA-256 digests only.
 */

export const API_KEY_HEADER = "x-api-key"

/** A missing or wrong key. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}

/** On the wire as `{"error":"Unauthorized","message":…}` with status 401, like the API's other refusals (404, 405, 429). */
export const UnauthorizedJson = Schema.transform(
  Schema.Struct({ error: Schema.Literal("Unauthorized"), message: Schema.String }),
  Schema.typeSchema(Unauthorized),
  {
    strict: true,
    decode: ({ message }) => new Unauthorized({ message }),
    encode: ({ message }) => ({ error: "Unauthorized" as const, message })
  }
).annotations(HttpApiSchema.annotations({ status: 401 }))

/** Headers every 401 carries: how to authenticate, and never cache the refusal. */
export const UNAUTHORIZED_HEADERS: Readonly<Record<string, string>> = {
  "www-authenticate": `ApiKey realm="api", header="${API_KEY_HEADER}"`,
  "cache-control": "no-store"
}

/** `presented`: the x-api-key header as sent ("" when absent). */
export const unauthorized = (presented: string) =>
  new Unauthorized({
    message:
      presented === ""
        ? `an API key is required: send it in the ${API_KEY_HEADER} header`
        : `the API key in the ${API_KEY_HEADER} header is not valid`
  })

const encodeUnauthorized = Schema.encodeSync(UnauthorizedJson)

/** The 401 for a request that reaches no endpoint (docs, unknown paths and methods), as the endpoints' own 401 reads. */
export const unauthorizedResponse = (presented: string) =>
  HttpServerResponse.unsafeJson(encodeUnauthorized(unauthorized(presented)), { status: 401 })

/**
 * The key check of every endpoint that carries it (all but /health), declared as the `apiKey` security
 * scheme. Its implementation (`ApiKeyAuthLive`) accepts anything while API_KEYS is unset.
 */
export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("api/ApiKeyAuth", {
  failure: UnauthorizedJson,
  security: { apiKey: HttpApiSecurity.apiKey({ key: API_KEY_HEADER, in: "header" }) }
}) {}

// ---------------------------------------------------------------------------------------------
// Accepted keys

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest()

/**
 * The matcher for the accepted `digests`: the index of the key `presented` is, -1 if none. Both sides
 * are SHA-256 digests, and every accepted digest is compared with `timingSafeEqual` without stopping
 * at a match, so the time taken reveals neither the key's length nor how much of it matched. An
 * empty or absent key matches nothing, whatever is configured.
 */
export const makeKeyMatcher =
  (digests: ReadonlyArray<Buffer>) =>
  (presented: string | undefined): number => {
    if (presented === undefined || presented === "" || digests.length === 0) return -1
    const digest = sha256(presented)
    let found = -1
    digests.forEach((accepted, i) => {
      if (timingSafeEqual(digest, accepted) && found === -1) found = i
    })
    return found
  }

const KEYS_ACCEPTED =
  "a comma-separated list of API keys, each either the key itself (at least 16 characters, no spaces or commas; " +
  'e.g. from `openssl rand -hex 32`) or sha256: and the 64 hex digits of its SHA-256 (printf %s "$KEY" | sha256sum)'

/**
 * API_KEYS as SHA-256 digests. A malformed plain key is not echoed back (it is a secret); a malformed
 * sha256: entry is, since it is only a (broken) hash.
 */
export const parseApiKeys = (raw: string): Either.Either<ReadonlyArray<Buffer>, ConfigError.ConfigError> => {
  const entries = raw.split(",").map((s) => s.trim())
  if (entries.every((e) => e.length === 0)) return Either.left(invalid("API_KEYS", raw, KEYS_ACCEPTED))
  const digests: Array<Buffer> = []
  for (const [i, entry] of entries.entries()) {
    if (entry.length === 0) continue
    const hashed = /^sha256:/i.test(entry)
    const hex = entry.slice("sha256:".length)
    const digest = hashed
      ? /^[0-9a-f]{64}$/i.test(hex) ? Buffer.from(hex, "hex") : undefined
      : /^[\x21-\x7e]{16,}$/.test(entry) ? sha256(entry) : undefined
    if (digest === undefined) {
      const shown = hashed ? JSON.stringify(entry) : `a ${entry.length}-character key, not shown`
      return Either.left(
        ConfigError.InvalidData(["API_KEYS"], `API_KEYS entry ${i + 1} (${shown}) is not valid: expected ${KEYS_ACCEPTED}.`)
      )
    }
    if (!digests.some((d) => d.equals(digest))) digests.push(digest)
  }
  return Either.right(digests)
}
