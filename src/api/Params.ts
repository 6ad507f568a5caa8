import { HttpApiSchema } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import { formatInstantMicros, isInstantShaped, parseInstantMicros } from "../domain/Ticker.js"

// The query parameters and refusals the endpoint groups share (Api.ts and AggTradesApi.ts).

export class UnknownSymbol extends Schema.TaggedError<UnknownSymbol>()(
  "UnknownSymbol",
  { message: Schema.String, symbol: Schema.String, known: Schema.Array(Schema.String) },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** A query-string instant: `2026-01-01T00:00:00Z`, with an offset, or a bare date (midnight UTC). Decodes to epoch microseconds. */
export const InstantParam = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const instant = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text
    const micros = parseInstantMicros(instant)
    if (micros !== undefined) return ParseResult.succeed(micros)
    return ParseResult.fail(
      new ParseResult.Type(
        ast,
        text,
        isInstantShaped(instant)
          ? `${JSON.stringify(text)} is not a date and time that exists: check the day of the month (February has 28 or 29), ` +
            "the month (01-12), hours (00-23), minutes and seconds (00-59) and the offset (at most ±23:59)"
          : `expected an ISO-8601 date or instant with a zone, e.g. 2026-01-01 or 2026-01-01T00:00:00Z, got ${JSON.stringify(text)}`
      )
    )
  },
  encode: (micros) => ParseResult.succeed(formatInstantMicros(micros))
})

/** A UTC date `YYYY-MM-DD` that exists, from 1970-01-01 on; stays the date text. */
export const DateParam = Schema.String.pipe(
  Schema.filter(
    (text) => {
      const micros = /^\d{4}-\d{2}-\d{2}$/.test(text) ? parseInstantMicros(`${text}T00:00:00Z`) : undefined
      return micros !== undefined && micros >= 0
    },
    {
      message: (issue) => `date must be a UTC date YYYY-MM-DD that exists, e.g. 2026-01-15, got ${JSON.stringify(issue.actual)}`,
      description: "a UTC date, YYYY-MM-DD"
    }
  )
)

/**
 * A whole number from 1 to `max` in a query string, as plain decimal digits only: `Number` would also
 * take `0x10`, `1e3` and ` 1`, which no client means as a count.
 */
export const wholeParam = (name: string, max: number, fallback: number) => {
  const message = () => `${name} must be a whole number from 1 to ${max}`
  return Schema.optionalWith(
    Schema.compose(Schema.String.pipe(Schema.pattern(/^[0-9]+$/, { message })), Schema.NumberFromString).pipe(
      Schema.int({ message }),
      Schema.between(1, max, { message, description: `a whole number from 1 to ${max}, in plain decimal digits` })
    ),
    { default: () => fallback }
  )
}

/** A client that already holds a report sends its ETag back; the answer is then a bodyless 304. */
export const ConditionalHeaders = Schema.Struct({ "if-none-match": Schema.optional(Schema.String) })
export const Csv = HttpApiSchema.Text({ contentType: "text/csv" })
