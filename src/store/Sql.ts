import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient, SqliteMigrator } from "@effect/sql-sqlite-node"
import { Effect, Layer } from "effect"
import * as AppConfig from "../Config.js"
import CreateTicks from "./migrations/0001_create_ticks.js"
import CreateCandles from "./migrations/0002_create_candles.js"

/** Migrations live in code (no directory globbing in dist/); the migrator records what ran. */
const MigratorLive = SqliteMigrator.layer({
  loader: SqliteMigrator.fromRecord({ "0001_create_ticks": CreateTicks, "0002_create_candles": CreateCandles })
})

const PragmasLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`PRAGMA journal_mode = WAL`
    yield* sql`PRAGMA synchronous = NORMAL`
    // A second process (the api role next to a consumer) waits for a lock instead of failing at once.
    yield* sql`PRAGMA busy_timeout = 5000`
  })
)

/** A migrated SQLite database at `filename`, its directory created when missing. */
export const sqliteLayer = (filename: string) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      yield* fs.makeDirectory(path.dirname(path.resolve(filename)), { recursive: true })
      return MigratorLive.pipe(Layer.provideMerge(PragmasLive), Layer.provideMerge(SqliteClient.layer({ filename })))
    })
  ).pipe(Layer.provide(NodeContext.layer))

/** The platform's database, at STORAGE_PATH. */
export const SqlLive = Layer.unwrapEffect(Effect.map(AppConfig.storagePath, sqliteLayer))
