import { HttpClient } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { httpServer } from "../../src/api/Http.js"
import { Health } from "../../src/status/Health.js"
import type { TradeRepo } from "../../src/store/TradeRepo.js"
import { freshStore, type StoreKind } from "./stores.js"

/**
 * The real server (on the test HTTP client) over a fresh store of `kind` (SQLite in a temp file or a
 * new PostgreSQL database), SYMBOLS=BTCUSDT,ETHUSDT,SOLUSDT, with the store's services beside it for
 * direct reads and writes. `dispose` in the file's afterAll releases it and removes the store.
 */
export const apiOver = (kind: StoreKind) => {
  const runtime = ManagedRuntime.make(
    httpServer(NodeHttpServer.layerTest).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(Layer.unwrapScoped(Effect.map(freshStore(kind), (store) => store.layer))),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT,ETHUSDT,SOLUSDT"]]))))
    )
  )
  const run = <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient | SqlClient.SqlClient | TradeRepo>) => runtime.runPromise(effect)
  /** GET `url` from the server: its status, headers and body. */
  const get = (url: string, headers: Record<string, string> = {}) =>
    run(
      Effect.gen(function* () {
        const res = yield* (yield* HttpClient.HttpClient).get(url, { headers })
        const text = yield* res.text
        return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
      }).pipe(Effect.scoped)
    )
  return { run, get, dispose: () => runtime.dispose() }
}
