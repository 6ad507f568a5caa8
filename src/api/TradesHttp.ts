import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Effect, Option } from "effect"
import { coverage } from "../bi/Coverage.js"
import { tradesCsv } from "../bi/TradesCsv.js"
import type { TickerSymbol } from "../domain/Ticker.js"
import { TradeRepo } from "../store/TradeRepo.js"
import { encodeAggTradeCursor, NoTrades } from "./AggTradesApi.js"
import { Api } from "./Api.js"
import { AnswerCache, jsonAnswer, latestResponse, toResponse } from "./AnswerCache.js"
import { KnownSymbols } from "./KnownSymbols.js"

/** Whether an If-None-Match header names `etag` (weak or strong, or `*`). */
export const etagMatches = (ifNoneMatch: string | undefined, etag: string): boolean => {
  if (ifNoneMatch === undefined) return false
  const presented = ifNoneMatch.split(",").map((t) => t.trim().replace(/^W\//, ""))
  return presented.includes(etag) || presented.includes("*")
}

/** The headers that point from one page of /agg-trades/range to the next. */
const nextPageHeaders = (requestUrl: string, next: string) => {
  const url = new URL(requestUrl, "http://localhost")
  url.searchParams.set("cursor", next)
  return { "x-next-cursor": next, link: `<${url.pathname}${url.search}>; rel="next"` }
}

export const AggTradesLive = HttpApiBuilder.group(Api, "aggTrades", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* TradeRepo
    const known = yield* KnownSymbols
    const cache = yield* AnswerCache
    return handlers
      .handle("latest", ({ urlParams: { limit, symbol } }) =>
        Effect.zipRight(known.require(symbol), latestResponse(cache, repo.latestJson(symbol, limit)))
      )
      .handle("range", ({ urlParams: { cursor, end, limit, start, symbol } }) =>
        Effect.gen(function* () {
          yield* known.require(symbol)
          const { url } = yield* HttpServerRequest.HttpServerRequest
          const page = Effect.map(Effect.orDie(repo.rangeJson(symbol, start, end, limit, cursor)), (page) =>
            jsonAnswer(page.json, page.more && page.last !== null ? nextPageHeaders(url, encodeAggTradeCursor(page.last)) : {})
          )
          return toResponse(yield* cache.answer("live", page))
        })
      )
  })
)

export const CoverageLive = HttpApiBuilder.group(Api, "coverage", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* TradeRepo
    const known = yield* KnownSymbols
    return handlers.handle("coverage", ({ urlParams: { days, symbol } }) =>
      Effect.gen(function* () {
        yield* known.require(symbol)
        const report = yield* Effect.orDie(coverage(repo, symbol, days, yield* Clock.currentTimeMillis))
        if (Option.isNone(report)) {
          return yield* new NoTrades({
            symbol,
            message: `no trades stored for ${symbol} yet: coverage starts with the symbol's first stored trade`
          })
        }
        return report.value
      })
    )
  })
)

/**
 * GET /bi/trades.csv (a handler of the `bi` group): the day's CSV streamed with its ETag and
 * Cache-Control, or a bodyless 304 when If-None-Match names the ETag.
 */
export const tradesCsvHandler = Effect.gen(function* () {
  const repo = yield* TradeRepo
  const known = yield* KnownSymbols
  return ({
    headers,
    urlParams: { date, symbol }
  }: {
    readonly headers: { readonly "if-none-match"?: string | undefined }
    readonly urlParams: { readonly symbol: TickerSymbol; readonly date: string }
  }) =>
    Effect.gen(function* () {
      yield* known.require(symbol)
      const csv = yield* Effect.orDie(tradesCsv(repo, symbol, date, yield* Clock.currentTimeMillis))
      const caching = { etag: csv.etag, "cache-control": csv.cacheControl }
      if (etagMatches(headers["if-none-match"], csv.etag)) return HttpServerResponse.empty({ status: 304, headers: caching })
      return HttpServerResponse.stream(csv.body, {
        contentType: "text/csv; charset=utf-8",
        headers: { ...caching, "content-disposition": `inline; filename="${csv.filename}"` }
      })
    })
})
