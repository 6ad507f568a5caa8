import type { HttpApp } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { SqlError } from "@effect/sql"
import { Effect } from "effect"

/** How long a client is told to wait before asking again while the store does not answer. */
const RETRY_AFTER_SECONDS = 5

/**
 * A read the store could not answer (PostgreSQL down or restarting, a SQLite lock held too long) is a
 * 503 with a JSON sentence and Retry-After, not an empty 500: the request was fine and will succeed
 * once the store is back. Handlers turn store failures into defects (`Effect.orDie`); this finds the
 * SqlError among them. `reason` says why in the driver's own words.
 */
export const storeErrorsMiddleware =
  (reason: (e: Error) => string) =>
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.catchAllDefect(app, (defect) =>
      defect instanceof SqlError.SqlError
        ? Effect.succeed(
            HttpServerResponse.unsafeJson(
              {
                error: "StoreUnavailable",
                message: `the store did not answer (${reason(defect)}); the request can be sent again in ${RETRY_AFTER_SECONDS} s`
              },
              { status: 503, headers: { "retry-after": String(RETRY_AFTER_SECONDS), "cache-control": "no-store" } }
            )
          )
        : Effect.die(defect)
    )
