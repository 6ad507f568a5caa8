import { Config, ConfigError, Duration, Either, Schema } from "effect"

/**
 * The readers every setting is declared with (Config.ts): Effect's own readers, each failing on a bad
 * value with one sentence naming the variable, the value and what is accepted.
 */

export const invalid = (name: string, value: string, accepted: string) =>
  ConfigError.InvalidData([name], `${name}=${JSON.stringify(value)} is not valid: expected ${accepted}.`)

/**
 * One of Effect's own readers (`Config.integer`, `Config.boolean`, … with `Config.validate`) for the
 * variable `name`, failing on a bad value with the sentence `invalid` makes: Effect's message ("Expected
 * an integer value but received …") names neither the variable nor what it is for. A missing
 * variable still fails as missing, so `Config.withDefault` and `Config.option` work after it.
 */
export const explained =
  (name: string, accepted: string) =>
  <A>(config: Config.Config<A>): Config.Config<A> =>
    Config.orElseIf(config, {
      if: (error) => !ConfigError.isMissingDataOnly(error),
      orElse: () => Config.string(name).pipe(Config.mapOrFail((value) => Either.left(invalid(name, value, accepted))))
    })

/**
 * Effect's `Config.integer` for `name`, limited to `min`..`max`. Like every Effect reader it fails on a
 * bad value with Effect's own words: put `explained` after it for the user's sentence.
 */
export const wholeNumber = (name: string, min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  notBlank(name, Config.integer(name)).pipe(Config.validate({ message: `from ${min} to ${max}`, validation: (n) => n >= min && n <= max }))

/**
 * `config` (a number reader of `name`), refusing a blank value: Effect's number readers take "" for 0
 * (`Number("")`), which would make `PORT=` a random port and a blank limit none.
 */
export const notBlank = <A>(name: string, config: Config.Config<A>): Config.Config<A> =>
  Config.all([Config.string(name).pipe(Config.validate({ message: "a value", validation: (s) => s.trim() !== "" })), config]).pipe(
    Config.map(([, value]) => value)
  )

export const positiveWholeNumber = (name: string, accepted: string) => wholeNumber(name, 1).pipe(explained(name, accepted))

/** Effect's `Config.number` for `name`, kept to finite values that pass `validation`. */
export const finiteNumber = (name: string, accepted: string, validation: (n: number) => boolean) =>
  notBlank(name, Config.number(name)).pipe(
    Config.validate({ message: accepted, validation: (n) => Number.isFinite(n) && validation(n) }),
    explained(name, accepted)
  )

export const seconds = (name: string, accepted: string) =>
  finiteNumber(name, accepted, (s) => s > 0).pipe(Config.map((s) => Duration.millis(Math.round(s * 1000))))

/**
 * One of `values`, in any case and around spaces ("SIM" reads as sim). Effect's `Config.literal` matches
 * exactly, so this is `Schema.Config` over `Trim`, `Lowercase` and `Literal`.
 */
export const literal = <const L extends ReadonlyArray<string>>(name: string, accepted: string, ...values: L) =>
  Schema.Config(name, Schema.Trim.pipe(Schema.compose(Schema.Lowercase), Schema.compose(Schema.Literal(...values)))).pipe(
    explained(name, accepted)
  )

export const tcpPort = (name: string) => wholeNumber(name, 0, 65535).pipe(explained(name, "a TCP port number from 0 to 65535"))

/**
 * A string variable checked by `parse` (formats Effect has no reader for: symbol lists, host:port
 * lists, URLs, instants, non-empty names); `alias` is read only when `name` is unset.
 */
export const checked = <A>(
  name: string,
  accepted: string,
  parse: (raw: string) => A | undefined,
  alias?: string
): Config.Config<A> => {
  const one = (variable: string) =>
    Config.string(variable).pipe(
      Config.mapOrFail((value) => {
        const parsed = parse(value.trim())
        return parsed === undefined ? Either.left(invalid(variable, value, accepted)) : Either.right(parsed)
      })
    )
  return alias === undefined
    ? one(name)
    : one(name).pipe(Config.orElseIf({ if: ConfigError.isMissingDataOnly, orElse: () => one(alias) }))
}

/** Renders a ConfigError as the sentences a user needs: which variable, which value, what is accepted. */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const messages: Array<string> = []
  const walk = (e: ConfigError.ConfigError): void => {
    switch (e._op) {
      case "And":
        walk(e.left)
        walk(e.right)
        return
      case "Or":
        // A fallback that was tried and failed on a value explains the failure (`explained`, an alias
        // such as CRYPTO_SYMBOLS): its sentence replaces the first reader's.
        if (ConfigError.isMissingDataOnly(e.right)) walk(e.left)
        walk(e.right)
        return
      case "InvalidData":
      case "MissingData":
      case "SourceUnavailable":
      case "Unsupported":
        messages.push(e.message)
        return
    }
  }
  walk(error)
  return [...new Set(messages)].join(" ")
}
