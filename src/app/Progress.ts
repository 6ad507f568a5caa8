import { Clock, Effect, Ref } from "effect"

export interface ProgressState {
  readonly label: string
  readonly pages: number
  readonly totalPages: number
  readonly rows: number
  readonly startedAt: number
}

const clock = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, "0")
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`
}

/** Time left at the pace so far, or undefined before the first page. */
export const eta = (state: ProgressState, now: number): number | undefined =>
  state.pages === 0 ? undefined : ((now - state.startedAt) / state.pages) * Math.max(0, state.totalPages - state.pages)

/** One line of a progress bar: `[#####-----]  50% pages 5/10 rows 5000 ETA 0:42 BTCUSDT 1m`. */
export const renderBar = (state: ProgressState, now: number, width = 24): string => {
  const share = state.totalPages === 0 ? 1 : Math.min(1, state.pages / state.totalPages)
  const filled = Math.round(share * width)
  const left = eta(state, now)
  return (
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.round(share * 100)).padStart(3)}% ` +
    `pages ${state.pages}/${state.totalPages} rows ${state.rows} ETA ${left === undefined ? "--:--" : clock(left)} ${state.label}`
  )
}

/**
 * Progress of a long job: a bar redrawn in place on a terminal, or a plain log line every
 * `logEvery` pages (and at the end) when the output is not a terminal.
 */
export const makeProgress = (totalPages: number, options: { readonly tty: boolean; readonly logEvery?: number }) =>
  Effect.gen(function* () {
    const startedAt = yield* Clock.currentTimeMillis
    const state = yield* Ref.make<ProgressState>({ label: "", pages: 0, totalPages, rows: 0, startedAt })
    const logEvery = options.logEvery ?? 10
    const show = (s: ProgressState, final: boolean) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        if (options.tty) {
          yield* Effect.sync(() => process.stderr.write(`\r${renderBar(s, now)}${final ? "\n" : ""}`))
        } else if (final || s.pages % logEvery === 0) {
          const left = eta(s, now)
          yield* Effect.logInfo(`backfill progress: page ${s.pages}/${s.totalPages}`).pipe(
            Effect.annotateLogs({ rows: s.rows, eta: left === undefined ? "unknown" : clock(left), at: s.label })
          )
        }
      })
    return {
      page: (label: string, rows: number) =>
        Ref.updateAndGet(state, (s) => ({ ...s, label, pages: s.pages + 1, rows: s.rows + rows })).pipe(
          Effect.flatMap((s) => show(s, false))
        ),
      done: Effect.flatMap(Ref.get(state), (s) => show(s, true)),
      state: Ref.get(state)
    } as const
  })
