import { Config, ConfigError, Duration, Either, LogLevel, Option, Schema } from "effect"
import { checked, explained, finiteNumber, literal, positiveWholeNumber, seconds, tcpPort, wholeNumber } from "./ConfigReaders.js"
import { parseInstantMicros, TickerSymbol } from "./domain/Ticker.js"

/**
 * Every setting the platform reads, declared once. Each reader fails with a ConfigError whose message
 * names the variable, the bad value and what is accepted; `main.ts` prints that sentence and exits 1.
 */

export { describeConfigError, explained, invalid, wholeNumber } from "./ConfigReaders.js"

const decodeSymbol = Schema.decodeUnknownOption(TickerSymbol)

export const parseSymbolList = (raw: string): ReadonlyArray<TickerSymbol> | undefined => {
  const parts = raw.split(",").map((s) => s.trim().toUpperCase()).filter((s) => s.length > 0)
  if (parts.length === 0) return undefined
  const out: Array<TickerSymbol> = []
  for (const part of parts) {
    const symbol = decodeSymbol(part)
    if (Option.isNone(symbol)) return undefined
    if (!out.includes(symbol.value)) out.push(symbol.value)
  }
  return out
}

const httpUrl = (raw: string) => {
  try {
    const url = new URL(raw)
    return url.protocol === "http:" || url.protocol === "https:" ? raw.replace(/\/+$/, "") : undefined
  } catch {
    return undefined
  }
}
const nonEmpty = (raw: string) => (raw.length > 0 ? raw : undefined)

export const symbols = checked(
  "SYMBOLS",
  "a comma-separated list of Binance symbols such as BTCUSDT,ETHUSDT",
  parseSymbolList,
  "CRYPTO_SYMBOLS"
).pipe(Config.withDefault(parseSymbolList("BTCUSDT,ETHUSDT")!))

export const pollInterval = seconds("POLL_INTERVAL_SECONDS", "a positive number of seconds such as 60").pipe(
  Config.withDefault(Duration.seconds(60))
)

export type BrokerMode = "direct" | "kafka"
export const brokerMode: Config.Config<BrokerMode> = literal(
  "BROKER_MODE",
  "direct (in-process queue) or kafka",
  "direct",
  "kafka"
).pipe(Config.withDefault("direct" as const))

export const kafkaBootstrapServers = checked(
  "KAFKA_BOOTSTRAP_SERVERS",
  "a comma-separated list of host:port pairs such as localhost:9092",
  (raw) => {
    const list = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    return list.length > 0 && list.every((s) => /^[^\s:]+:\d{1,5}$/.test(s)) ? list : undefined
  }
).pipe(Config.withDefault(["localhost:9092"]))

export const topicName = checked(
  "TOPIC_NAME",
  "a Kafka topic name of letters, digits, '.', '_' or '-' (at most 249 characters)",
  (raw) => (/^[A-Za-z0-9._-]{1,249}$/.test(raw) ? raw : undefined),
  "KAFKA_TOPIC"
).pipe(Config.withDefault("crypto_prices"))

export const topicPartitions = positiveWholeNumber("TOPIC_PARTITIONS", "a positive whole number such as 3").pipe(
  Config.withDefault(3)
)
export const topicReplicationFactor = positiveWholeNumber(
  "TOPIC_REPLICATION_FACTOR",
  "a positive whole number such as 1"
).pipe(Config.withDefault(1))
export const consumerGroupId = checked("CONSUMER_GROUP_ID", "a non-empty Kafka consumer group id", nonEmpty).pipe(
  Config.withDefault("crypto-consumer")
)
export const tradesTopicName = checked(
  "TRADES_TOPIC_NAME",
  "a Kafka topic name of letters, digits, '.', '_' or '-' (at most 249 characters)",
  (raw) => (/^[A-Za-z0-9._-]{1,249}$/.test(raw) ? raw : undefined)
).pipe(Config.withDefault("crypto_trades"))
export const barsTopicName = checked(
  "BARS_TOPIC_NAME",
  "a Kafka topic name of letters, digits, '.', '_' or '-' (at most 249 characters)",
  (raw) => (/^[A-Za-z0-9._-]{1,249}$/.test(raw) ? raw : undefined)
).pipe(Config.withDefault("crypto_klines"))
export const kafkaClientId = checked("KAFKA_CLIENT_ID", "a non-empty Kafka client id", nonEmpty).pipe(
  Config.withDefault("crypto-streaming-platform")
)
/** Events the Kafka producer holds in memory while the broker is unreachable, before publish suspends. */
export const kafkaProducerBuffer = positiveWholeNumber(
  "KAFKA_PRODUCER_BUFFER",
  "a positive whole number such as 10000"
).pipe(Config.withDefault(10_000))

export const storagePath = checked("STORAGE_PATH", "a file path such as data/app.db", nonEmpty).pipe(
  Config.withDefault("data/app.db")
)
export type StoreKind = "sqlite" | "postgres"
/** Where the history is kept: one SQLite file (the embedded default) or a PostgreSQL server. */
export const store: Config.Config<StoreKind> = literal(
  "STORE",
  "sqlite (one file at STORAGE_PATH, the default) or postgres (a PostgreSQL server at DATABASE_URL)",
  "sqlite",
  "postgres"
).pipe(Config.withDefault("sqlite" as const))
/** `raw` when it is a PostgreSQL URL (postgres:// or postgresql:// with a host), else undefined. */
export const postgresUrl = (raw: string) => {
  try {
    const url = new URL(raw)
    return (url.protocol === "postgres:" || url.protocol === "postgresql:") && url.hostname !== "" ? raw : undefined
  } catch {
    return undefined
  }
}
const DATABASE_URL_EXAMPLE = "a PostgreSQL URL such as postgres://user@127.0.0.1:5432/crypto"
export const databaseUrl = checked("DATABASE_URL", DATABASE_URL_EXAMPLE, postgresUrl)
export const databasePoolSize = wholeNumber("DATABASE_POOL_SIZE", 1, 200).pipe(
  explained("DATABASE_POOL_SIZE", "a whole number of connections from 1 to 200"),
  Config.withDefault(10)
)
/** The store and, for PostgreSQL, its URL (required) and pool size; STORE=postgres without DATABASE_URL is refused. */
export const storeSettings = Config.all({ kind: store, url: Config.option(databaseUrl), poolSize: databasePoolSize }).pipe(
  Config.mapOrFail(({ kind, poolSize, url }) =>
    kind === "postgres" && Option.isNone(url)
      ? Either.left(ConfigError.MissingData(["DATABASE_URL"], `STORE=postgres needs DATABASE_URL: ${DATABASE_URL_EXAMPLE}.`))
      : Either.right({ kind, url: Option.getOrUndefined(url), poolSize })
  )
)
export const enableDbSink = Config.boolean("ENABLE_DB_SINK").pipe(
  explained("ENABLE_DB_SINK", "true or false"),
  Config.withDefault(true)
)
export const rawDir = checked("RAW_DIR", "a directory path such as data/raw", nonEmpty).pipe(
  Config.withDefault("data/raw")
)
export const port = tcpPort("PORT").pipe(Config.withDefault(8000))
/** When set, the producer and consumer roles serve GET /health on this port (unset: no HTTP server). */
export const healthPort = Config.option(tcpPort("HEALTH_PORT"))
export const host = checked("HOST", "an address to listen on such as 0.0.0.0 or 127.0.0.1", nonEmpty).pipe(
  Config.withDefault("0.0.0.0")
)
export const binanceBaseUrl = checked(
  "BINANCE_BASE_URL",
  "an http(s) URL such as https://data-api.binance.vision",
  httpUrl
).pipe(Config.withDefault("https://data-api.binance.vision"))
export const binanceTimeout = seconds("BINANCE_TIMEOUT_SECONDS", "a positive number of seconds such as 10").pipe(
  Config.withDefault(Duration.seconds(10))
)

/** Effect's `Config.logLevel` reads the levels' own labels (`warn`, `off`, any case); README's names are added. */
const LOG_LEVELS = "all, trace, debug, info, warning, error, fatal, none"
export const logLevel = Config.logLevel("LOG_LEVEL").pipe(
  Config.orElse(() =>
    literal("LOG_LEVEL", LOG_LEVELS, "warning", "none").pipe(
      Config.map((name) => (name === "warning" ? LogLevel.Warning : LogLevel.None))
    )
  ),
  explained("LOG_LEVEL", LOG_LEVELS),
  Config.withDefault(LogLevel.Info)
)
export const logFormat = literal("LOG_FORMAT", "pretty or json", "pretty", "json").pipe(
  Config.withDefault("pretty" as const)
)

/**
 * A batch is stored when it holds CONSUMER_BATCH_SIZE events or CONSUMER_BATCH_WINDOW_MS after its
 * first, whichever comes first. Large batches carry high rates (a batch's fixed cost, the COMMIT
 * above all, is shared by more events: bench/RESULTS.md, store-path); the short window bounds how
 * long an event waits at low rates (publish-to-queryable latency).
 */
export const consumerBatchSize = positiveWholeNumber("CONSUMER_BATCH_SIZE", "a positive whole number such as 2000").pipe(
  Config.withDefault(2000)
)
export const consumerBatchWindow = positiveWholeNumber(
  "CONSUMER_BATCH_WINDOW_MS",
  "a positive whole number of milliseconds such as 100"
).pipe(Config.map(Duration.millis), Config.withDefault(Duration.millis(100)))
export const directQueueCapacity = positiveWholeNumber(
  "DIRECT_QUEUE_CAPACITY",
  "a positive whole number such as 10000"
).pipe(Config.withDefault(10_000))

export type MarketSourceName = "poll" | "stream" | "both" | "sim" | "replay"
/**
 * Where market events come from: Binance's REST 24h tickers, its WebSocket trades and 1m bars, both,
 * a simulated market, or recorded day files.
 */
export const source: Config.Config<MarketSourceName> = literal(
  "SOURCE",
  "both (WebSocket trades and bars plus the REST ticker poll), stream (WebSocket only), poll (REST 24h tickers only), sim (a simulated market) or replay (recorded JSONL day files)",
  "poll",
  "stream",
  "both",
  "sim",
  "replay"
).pipe(Config.withDefault("both" as const))

/** Whether SOURCE includes Binance's WebSocket streams (trades, bars, gap repair). */
export const streams = (source: MarketSourceName): boolean => source === "stream" || source === "both"

const wsOrigin = (raw: string) => {
  try {
    const url = new URL(raw)
    const originOnly = (url.pathname === "/" || url.pathname === "") && url.search === "" && url.hash === ""
    return (url.protocol === "ws:" || url.protocol === "wss:") && originOnly ? `${url.protocol}//${url.host}` : undefined
  } catch {
    return undefined
  }
}
/** The WebSocket origin (no path): the platform appends `/stream?streams=...`. */
export const binanceWsUrl = checked(
  "BINANCE_WS_URL",
  "a ws:// or wss:// origin without a path, such as wss://data-stream.binance.vision",
  wsOrigin
).pipe(Config.withDefault("wss://data-stream.binance.vision"))

/** A connection that carried no data message for this long is replaced (pings are not data). */
export const streamStale = wholeNumber("STREAM_STALE_SECONDS", 1, 86_400).pipe(
  explained("STREAM_STALE_SECONDS", "a whole number of seconds from 1 to 86400 such as 30"),
  Config.map(Duration.seconds),
  Config.withDefault(Duration.seconds(30))
)
/** A connection is renewed (make before break) after this long: Binance cuts every connection at 24 h. */
export const streamRenew = wholeNumber("STREAM_RENEW_SECONDS", 1, 86_000).pipe(
  explained("STREAM_RENEW_SECONDS", "a whole number of seconds from 1 to 86000 such as 82800 (23 h)"),
  Config.map(Duration.seconds),
  Config.withDefault(Duration.seconds(82_800))
)
/** On a first start with no stored trades, how many minutes of trades to fetch by REST (0: history starts at the first streamed trade). */
export const tradesBackfillMinutes = wholeNumber("TRADES_BACKFILL_MINUTES", 0, 10_080).pipe(
  explained("TRADES_BACKFILL_MINUTES", "a whole number of minutes from 0 to 10080 (7 days)"),
  Config.withDefault(0)
)

/** The simulated market's seed: with the same settings and start, the same seed gives the same events. */
export const simSeed = wholeNumber("SIM_SEED", Number.MIN_SAFE_INTEGER).pipe(
  explained("SIM_SEED", "a whole number such as 42"),
  Config.withDefault(42)
)

export const SIM_MAX_EVENTS_PER_SECOND = 200_000
export const simEventsPerSecond = wholeNumber("SIM_EVENTS_PER_SECOND", 1, SIM_MAX_EVENTS_PER_SECOND).pipe(
  explained(
    "SIM_EVENTS_PER_SECOND",
    `a whole number from 1 to ${SIM_MAX_EVENTS_PER_SECOND} (events per second over all symbols)`
  ),
  Config.withDefault(10)
)

export const SIM_MAX_TRADES_PER_SECOND = 200_000
/** Aggregate trades the simulated market emits per second over all symbols (TradeBroker); 0: none. */
export const simTradesPerSecond = wholeNumber("SIM_TRADES_PER_SECOND", 0, SIM_MAX_TRADES_PER_SECOND).pipe(
  explained(
    "SIM_TRADES_PER_SECOND",
    `a whole number from 0 (no trades) to ${SIM_MAX_TRADES_PER_SECOND} (aggregate trades per second over all symbols)`
  ),
  Config.withDefault(0)
)

/** The instant of the first simulated event, in microseconds since the epoch; unset: the start of the process. */
export const simStart = Config.option(
  checked("SIM_START", "an ISO-8601 instant with an offset such as 2026-01-15T00:00:00Z", parseInstantMicros)
)

/** Where `SOURCE=replay` reads its `*.jsonl` day files; unset: RAW_DIR. */
export const replayDir = checked("REPLAY_DIR", "a directory path such as data/raw", nonEmpty).pipe(
  Config.orElseIf({ if: ConfigError.isMissingDataOnly, orElse: () => rawDir })
)

/** Replay pace: 1 = as recorded, 2 = twice as fast, 0 = as fast as the pipeline takes the events. */
export const replaySpeed = finiteNumber(
  "REPLAY_SPEED",
  "a number of at least 0 such as 1 (as recorded), 10 (ten times faster) or 0 (as fast as possible)",
  (n) => n >= 0
).pipe(Config.withDefault(1))

/** GET /stream sends a heartbeat comment this often (proxies close idle connections). */
export const sseHeartbeatSeconds = wholeNumber("SSE_HEARTBEAT_SECONDS", 1, 3600).pipe(
  explained("SSE_HEARTBEAT_SECONDS", "a whole number of seconds from 1 to 3600"),
  Config.withDefault(15)
)

/** Reads every setting once, so a bad value stops the process at start-up rather than later in one role. */
export const validateAll = Config.all([
  symbols,
  pollInterval,
  brokerMode,
  kafkaBootstrapServers,
  topicName,
  topicPartitions,
  topicReplicationFactor,
  consumerGroupId,
  tradesTopicName,
  barsTopicName,
  kafkaClientId,
  kafkaProducerBuffer,
  storagePath,
  storeSettings,
  enableDbSink,
  rawDir,
  port,
  healthPort,
  host,
  binanceBaseUrl,
  binanceTimeout,
  logLevel,
  logFormat,
  consumerBatchSize,
  consumerBatchWindow,
  directQueueCapacity,
  source,
  simSeed,
  simEventsPerSecond,
  simTradesPerSecond,
  simStart,
  replayDir,
  replaySpeed,
  binanceWsUrl,
  streamStale,
  streamRenew,
  tradesBackfillMinutes,
  sseHeartbeatSeconds
])
