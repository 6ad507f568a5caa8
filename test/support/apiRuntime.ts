import { HttpClient } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { httpServer } from "../../src/api/Http.js"
import { Health } from "../../src/status/Health.js"
import { sqliteStore } from "../../src/store/Store.js"
import { TradeRepo } from "../../src/store/TradeRepo.js"

/**
 * The real server (on the test HTTP client) over a database in a fresh temporary directory named
 * `prefix…`, SYMBOLS=BTCUSDT,ETHUSDT,SOLUSDT, with TradeRepo beside it for direct reads. `dispose` in
 * the file's afterAll releases it and removes the directory.
 */
export const tradesApiRuntime = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const runtime = ManagedRuntime.make(
    httpServer(NodeHttpServer.layerTest).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(path.join(dir, "app.db"))),
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
  const dispose = async () => {
    await runtime.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { dir, run, get, dispose }
}
