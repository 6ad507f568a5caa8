import { randomBytes } from "node:crypto"
import pg from "pg"

/**
 * The local PostgreSQL server the store tests use (PG_TEST_URL, else 127.0.0.1:5432 as `postgres`,
 * trust authentication). Each test file makes databases of its own and drops them: files run in
 * parallel and never see one another's rows. A missing server fails the test with what to do.
 */
export const PG_SERVER_URL = process.env["PG_TEST_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const adminQuery = async (text: string): Promise<void> => {
  const client = new pg.Client({ connectionString: PG_SERVER_URL, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
  } catch (cause) {
    throw new Error(
      `The PostgreSQL tests need a server at ${PG_SERVER_URL} (trust authentication) and could not connect ` +
        `(${cause instanceof Error ? cause.message : String(cause)}). Start it: ` +
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start, or set PG_TEST_URL.",
      { cause }
    )
  }
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/** The URL of `database` on the test server. */
export const databaseUrl = (database: string): string => {
  const url = new URL(PG_SERVER_URL)
  url.pathname = `/${database}`
  return url.toString()
}

export interface TestDatabase {
  readonly name: string
  readonly url: string
  /** Drops the database (ending its other sessions first). */
  readonly drop: () => Promise<void>
}

/** A new, empty database on the test server, named `cs_test_<label>_<random>`. */
export const createTestDatabase = async (label = "db"): Promise<TestDatabase> => {
  const name = `cs_test_${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`
  await adminQuery(`CREATE DATABASE ${name}`)
  return {
    name,
    url: databaseUrl(name),
    drop: () => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

/** Runs one query on `url` and returns its rows (int8 columns as numbers). */
export const pgQuery = async (url: string, text: string, params: ReadonlyArray<unknown> = []): Promise<Array<Record<string, unknown>>> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.setTypeParser(20, (v: string) => Number(v))
  await client.connect()
  try {
    return (await client.query(text, params as Array<unknown>)).rows as Array<Record<string, unknown>>
  } finally {
    await client.end()
  }
}
