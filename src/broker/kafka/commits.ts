import { Cause, Duration, Effect, Either, Option, Ref } from "effect"
import type { Consumer } from "kafkajs"
import { BrokerError } from "../Broker.js"
import { call } from "./client.js"
import { type CommitTarget, OffsetBook, type Position } from "./offsets.js"

/** A delivery's position in Kafka; `acknowledge` commits it. */
export interface KafkaReceipt extends Position {
  readonly topic: string
}

const isReceipt = (u: unknown): u is KafkaReceipt =>
  typeof u === "object" && u !== null && "topic" in u && "partition" in u && "offset" in u && "epoch" in u

const COMMIT_TIMEOUT = Duration.seconds(3)

/**
 * Commits for one topic: the offset book (offsets.ts) decides what may be committed, this module commits
 * it through the session's consumer, one commit at a time so that a later offset is never overtaken.
 */
export interface Committer {
  readonly book: OffsetBook
  /** The session's consumer while it runs; commits need it. */
  readonly current: Ref.Ref<Option.Option<Consumer>>
  /** Stored deliveries (receipts of other topics are ignored): commits what the book allows now. */
  readonly acknowledge: (acked: ReadonlyArray<{ readonly receipt: unknown }>) => Effect.Effect<void>
  /** Messages now in the DLQ: commits past them at once when nothing before them is outstanding. */
  readonly deadLettered: (partition: number, epoch: number, offsets: ReadonlyArray<number>) => Effect.Effect<void>
}

export const makeCommitter = (topic: string): Effect.Effect<Committer> =>
  Effect.gen(function* () {
    const book = new OffsetBook()
    const current = yield* Ref.make<Option.Option<Consumer>>(Option.none())
    const lock = yield* Effect.makeSemaphore(1)

    /** Commits and records the offsets; a failure is not fatal: the events are redelivered, the sinks are idempotent. */
    const commit = (targets: ReadonlyArray<CommitTarget>) =>
      Effect.gen(function* () {
        if (targets.length === 0) return
        const consumer = yield* Ref.get(current)
        const detail = targets.map((t) => `${t.partition}@${t.offset}`).join(", ")
        if (Option.isNone(consumer)) {
          return yield* Effect.logWarning(
            `offsets ${detail} not committed: the consumer is reconnecting; those events will be delivered again`
          )
        }
        const result = yield* call("commit", `committing ${detail}`, () =>
          consumer.value.commitOffsets(targets.map((t) => ({ topic, partition: t.partition, offset: String(t.offset) })))
        ).pipe(
          Effect.timeoutFail({
            duration: COMMIT_TIMEOUT,
            onTimeout: () => new BrokerError({ op: "commit", detail: `committing ${detail} timed out` })
          }),
          Effect.either
        )
        if (Either.isLeft(result)) {
          // Typically REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION during a rebalance, or the broker being down.
          // A later commit of the partition covers these offsets; if none comes, they are delivered again.
          return yield* Effect.logWarning(
            "committing offsets failed; those events will be delivered again unless a later commit covers them",
            Cause.fail(result.left)
          )
        }
        book.committed(targets)
      })

    const acknowledge = (acked: ReadonlyArray<{ readonly receipt: unknown }>) =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const receipts: Array<KafkaReceipt> = []
          for (const { receipt } of acked) if (isReceipt(receipt) && receipt.topic === topic) receipts.push(receipt)
          if (receipts.length === 0) return Effect.void
          const { targets, moved } = book.acknowledge(receipts)
          // Revoked by a rebalance: its new owner starts from the committed offset and redelivers; committing
          // here could move the group's offset backwards under it.
          const skipped =
            moved.length === 0
              ? Effect.void
              : Effect.logInfo(
                  `not committing partition(s) ${moved.join(", ")}: reassigned to another consumer, which delivers them again`
                )
          return Effect.zipRight(skipped, commit(targets))
        })
      )

    const deadLettered = (partition: number, epoch: number, offsets: ReadonlyArray<number>) =>
      lock.withPermits(1)(Effect.suspend(() => commit(book.deadLettered(partition, epoch, offsets))))

    return { book, current, acknowledge, deadLettered }
  })
