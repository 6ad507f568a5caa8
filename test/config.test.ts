import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import * as AppConfig from "../src/Config.js"
import { withEnv } from "./support/effect.js"

const failureOf = <A>(config: Effect.Effect<A, unknown>) =>
  Effect.either(config).pipe(
    Effect.map((e) => (Either.isLeft(e) ? AppConfig.describeConfigError(e.left as never) : "no error"))
  )

describe("configuration", () => {
  it.effect("has working defaults", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual<ReadonlyArray<string>>(yield* AppConfig.symbols, ["BTCUSDT", "ETHUSDT"])
      assert.isTrue(Duration.equals(yield* AppConfig.pollInterval, Duration.seconds(60)))
      assert.strictEqual(yield* AppConfig.brokerMode, "direct")
      assert.strictEqual(yield* AppConfig.topicName, "crypto_prices")
      assert.strictEqual(yield* AppConfig.storagePath, "data/app.db")
      assert.strictEqual(yield* AppConfig.port, 8000)
      assert.strictEqual(yield* AppConfig.binanceBaseUrl, "https://data-api.binance.vision")
    }).pipe(withEnv({}))
  )

  it.effect("keeps the history in SQLite unless STORE=postgres, which needs a PostgreSQL DATABASE_URL", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* AppConfig.storeSettings.pipe(withEnv({})), { kind: "sqlite", url: undefined, poolSize: 10 })
      const url = "postgres://crypto:secret@db.internal:5432/crypto"
      assert.deepStrictEqual(yield* AppConfig.storeSettings.pipe(withEnv({ STORE: "postgres", DATABASE_URL: url, DATABASE_POOL_SIZE: "4" })), {
        kind: "postgres",
        url,
        poolSize: 4
      })
      assert.match(yield* failureOf(AppConfig.storeSettings.pipe(withEnv({ STORE: "postgres" }))), /STORE=postgres needs DATABASE_URL/)
      assert.match(
        yield* failureOf(AppConfig.storeSettings.pipe(withEnv({ STORE: "postgres", DATABASE_URL: "mysql://db/crypto" }))),
        /DATABASE_URL="mysql:\/\/db\/crypto" is not valid: expected a PostgreSQL URL/
      )
      assert.match(yield* failureOf(AppConfig.storeSettings.pipe(withEnv({ STORE: "mysql" }))), /STORE="mysql" is not valid/)
      assert.match(yield* failureOf(AppConfig.storeSettings.pipe(withEnv({ DATABASE_POOL_SIZE: "0" }))), /DATABASE_POOL_SIZE="0" is not valid/)
    })
  )

  it.effect("accepts the aliases CRYPTO_SYMBOLS and KAFKA_TOPIC, normalising symbols", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual<ReadonlyArray<string>>(yield* AppConfig.symbols, ["SOLUSDT", "BTCUSDT"])
      assert.strictEqual(yield* AppConfig.topicName, "ticks")
    }).pipe(withEnv({ CRYPTO_SYMBOLS: " solusdt, BTCUSDT,solusdt ", KAFKA_TOPIC: "ticks" }))
  )

  it.effect("prefers SYMBOLS over CRYPTO_SYMBOLS", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual<ReadonlyArray<string>>(yield* AppConfig.symbols, ["ETHUSDT"])
    }).pipe(withEnv({ SYMBOLS: "ETHUSDT", CRYPTO_SYMBOLS: "BTCUSDT" }))
  )

  it.effect("names the variable, the value and what is accepted for a bad value", () =>
    Effect.gen(function* () {
      const symbols = yield* failureOf(AppConfig.symbols).pipe(withEnv({ SYMBOLS: "BTC USDT,ETH" }))
      assert.include(symbols, 'SYMBOLS="BTC USDT,ETH" is not valid')
      assert.include(symbols, "comma-separated list of Binance symbols")
      const interval = yield* failureOf(AppConfig.pollInterval).pipe(withEnv({ POLL_INTERVAL_SECONDS: "-5" }))
      assert.include(interval, 'POLL_INTERVAL_SECONDS="-5" is not valid: expected a positive number of seconds')
      const mode = yield* failureOf(AppConfig.brokerMode).pipe(withEnv({ BROKER_MODE: "rabbit" }))
      assert.include(mode, 'BROKER_MODE="rabbit" is not valid: expected direct (in-process queue) or kafka')
      const url = yield* failureOf(AppConfig.binanceBaseUrl).pipe(withEnv({ BINANCE_BASE_URL: "ftp://x" }))
      assert.include(url, "BINANCE_BASE_URL")
      const aliasOnly = yield* failureOf(AppConfig.symbols).pipe(withEnv({ CRYPTO_SYMBOLS: "$$$" }))
      assert.include(aliasOnly, 'CRYPTO_SYMBOLS="$$$" is not valid')
      const flag = yield* failureOf(AppConfig.enableDbSink).pipe(withEnv({ ENABLE_DB_SINK: "maybe" }))
      assert.include(flag, 'ENABLE_DB_SINK="maybe" is not valid: expected true or false')
    })
  )

  it.effect("refuses a blank number instead of reading it as 0 (PORT= would listen on a random port)", () =>
    Effect.gen(function* () {
      const port = yield* failureOf(AppConfig.port).pipe(withEnv({ PORT: "" }))
      assert.include(port, 'PORT="" is not valid: expected a TCP port number')
      const interval = yield* failureOf(AppConfig.pollInterval).pipe(withEnv({ POLL_INTERVAL_SECONDS: " " }))
      assert.include(interval, 'POLL_INTERVAL_SECONDS=" " is not valid')
      assert.strictEqual(yield* AppConfig.port.pipe(withEnv({ PORT: "8080" })), 8080)
    })
  )
})
