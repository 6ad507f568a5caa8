import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { postgresStore, sqliteStore, type StoreServices } from "../../src/store/Store.js"
import { createTestDatabase } from "./pg.js"

/** The stores every repository test runs against: `describe.each(STORE_KINDS)`. */
export const STORE_KINDS = ["sqlite", "postgres"] as const
export type StoreKind = (typeof STORE_KINDS)[number]

/** Where a fresh store lives: a SQLite file path or a PostgreSQL URL. */
export interface FreshStore {
  readonly kind: StoreKind
  readonly location: string
  readonly layer: Layer.Layer<StoreServices, unknown>
}

/**
 * A new, empty store of `kind` for the scope: SQLite in a file of a new temp directory, PostgreSQL in
 * a new database of the local server; both removed when the scope closes.
 */
export const freshStore = (kind: StoreKind) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      if (kind === "sqlite") {
        const dir = mkdtempSync(join(tmpdir(), "cs-store-"))
        const file = join(dir, "app.db")
        return { store: { kind, location: file, layer: sqliteStore(file) } as FreshStore, drop: async () => rmSync(dir, { recursive: true, force: true }) }
      }
      const db = await createTestDatabase("store")
      return { store: { kind, location: db.url, layer: postgresStore(db.url, 4) } as FreshStore, drop: db.drop }
    }),
    ({ drop }) => Effect.promise(drop)
  ).pipe(Effect.map(({ store }) => store))

/** Runs `effect` with a fresh store of `kind` (closed before the store is removed). */
export const withStore =
  (kind: StoreKind) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, unknown, Exclude<R, StoreServices>> =>
    Effect.scoped(
      Effect.flatMap(freshStore(kind), (store) =>
        // the layer's own scope ends (connections closed) before the database is dropped
        Effect.provide(effect, store.layer)
      )
    ) as Effect.Effect<A, unknown, Exclude<R, StoreServices>>
