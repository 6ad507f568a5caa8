import { Effect } from "effect"
import { eventJson } from "../domain/EventJson.js"
import { parseInstantMicros, type Tick, type TickerEvent } from "../domain/Ticker.js"
import { makeDayLog } from "./DayLog.js"
import { Identities } from "./Identities.js"
import { TickSink } from "./TickSink.js"

/** How much of an existing day file is read back to recognise replays after a restart (~45,000 lines). */
const TAIL_BYTES = 8 * 1024 * 1024
/**
 * Identities remembered per day file; the oldest fall out first. Replays come from Kafka redelivery
 * (the batches in flight around a crash or a rebalance), so recent identities are what matter; this is
 * about twice what the tail read recognises after a restart.
 */
const MAX_REMEMBERED = 100_000
/** Day files whose identities are kept in memory (today, yesterday and a late straggler). */
const MAX_DAYS = 3
// The sink's memory is therefore bounded however long it runs: at most MAX_DAYS × MAX_REMEMBERED =
// 300,000 identities (8 bytes each, at most twice that allocated, plus each symbol's name once),
// plus one number per day file whose failed append could not be undone yet (cut back before that
// file's next append, so in practice only the days of the one batch being retried).

/** A day file's ticks by identity (symbol, instant). */
const tickMemory = () => {
  const ids = new Identities(MAX_REMEMBERED)
  return {
    add: (tick: Tick) => ids.add(tick.symbol, tick.tsMicros),
    remove: (tick: Tick) => ids.remove(tick.symbol, tick.tsMicros),
    addLine: (line: string) => {
      try {
        const parsed = JSON.parse(line) as TickerEvent
        const micros = parseInstantMicros(parsed.timestamp_utc)
        if (micros !== undefined) ids.add(parsed.symbol, micros)
      } catch {
        // a line damaged otherwise (not by a torn write): not an identity we can match
      }
    }
  }
}

/**
 * The raw (bronze) log of ticks: `RAW_DIR/YYYY-MM-DD.jsonl` by the event's UTC day, one contract event
 * per line (`domain/EventJson`), appended all or nothing (`DayLog`). Replays of recently written events
 * (Kafka redelivery after a crash) are recognised, after a restart from the last 8 MiB of the day file,
 * and not appended again; SQLite remains the exact, queryable store.
 */
export const makeJsonlSink = (rawDir: string) =>
  makeDayLog<Tick>({
    name: "jsonl",
    dir: rawDir,
    micros: (tick) => tick.tsMicros,
    line: (tick) => eventJson(tick.event),
    memory: tickMemory,
    maxDays: MAX_DAYS,
    readBackBytes: TAIL_BYTES
  }).pipe(Effect.map(TickSink.of))
