import { Effect } from "effect"
import * as AppConfig from "../Config.js"
import { TickRepo } from "../store/TickRepo.js"
import { TradeRepo } from "../store/TradeRepo.js"
import { UnknownSymbol } from "./Params.js"

/**
 * A symbol is known when it is configured (SYMBOLS) or has stored data (tickers or trades); anything
 * else is a client error. The store is asked only for a symbol that is not configured.
 */
export class KnownSymbols extends Effect.Service<KnownSymbols>()("api/KnownSymbols", {
  effect: Effect.gen(function* () {
    const ticks = yield* TickRepo
    const trades = yield* TradeRepo
    const configured: ReadonlyArray<string> = yield* AppConfig.symbols
    const all = Effect.map(
      Effect.orDie(Effect.zip(ticks.symbols, trades.symbols)),
      ([ticked, traded]) => [...new Set([...configured, ...ticked.map((s) => s.symbol), ...traded])].sort()
    )
    const require = (symbol: string) =>
      configured.includes(symbol)
        ? Effect.void
        : Effect.flatMap(all, (known) =>
            known.includes(symbol)
              ? Effect.void
              : Effect.fail(
                  new UnknownSymbol({
                    symbol,
                    known,
                    message: `no data for symbol ${symbol}: it is neither configured (SYMBOLS) nor stored; known symbols: ${known.join(", ")}`
                  })
                )
          )
    return { all, require } as const
  })
}) {}
