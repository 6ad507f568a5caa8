import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer } from "effect"
import { createServer, type Server } from "node:http"
import { installClientErrorHandler } from "./ClientErrors.js"
import { healthServer } from "./HealthHttp.js"
import { httpServer } from "./Http.js"
import { SecurityConfig, type SecuritySettings } from "./Security.js"

/** In-flight requests may finish for this long after a stop; then every connection is cut. */
export const CLOSE_GRACE = Duration.millis(2500)
/** How often idle keep-alive connections are closed while in-flight requests finish. */
const IDLE_SWEEP_MS = 50

/**
 * Closes `server` within CLOSE_GRACE whatever its clients do: it stops accepting at once, closes idle
 * keep-alive connections as they become idle, and past the grace cuts what is left (a client whose
 * headers never finish, a request still running). Node's own `close` waits for every connection.
 */
export const closeGracefully = (server: Server) =>
  Effect.async<void>((resume) => {
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearInterval(sweep)
      clearTimeout(cut)
      resume(Effect.void)
    }
    const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS)
    const cut = setTimeout(() => {
      server.closeAllConnections()
      finish()
    }, Duration.toMillis(CLOSE_GRACE))
    if (server.listening) server.close(finish)
    else finish()
    server.closeIdleConnections()
  })

/** `layer` serving on `server`, closed gracefully before its own finalizers run. */
const withGracefulClose = <A, E, R>(server: Server, layer: Layer.Layer<A, E, R>) =>
  Layer.scopedDiscard(Effect.addFinalizer(() => closeGracefully(server))).pipe(Layer.provideMerge(layer))

type NodeServerLayer = ReturnType<typeof NodeHttpServer.layer>

/** `serve` on a `node:http` server listening on `port`/`host`: JSON answers for requests Node's parser rejects, and a bounded graceful close. */
const listening = <A, E, R>(
  options: { readonly port: number; readonly host: string },
  serve: (server: NodeServerLayer, settings: SecuritySettings) => Layer.Layer<A, E, R>
) =>
  Layer.unwrapEffect(
    Effect.map(SecurityConfig, (settings) => {
      const server = installClientErrorHandler(createServer(), settings)
      return withGracefulClose(server, serve(NodeHttpServer.layer(() => server, options), settings))
    })
  )

/** The API on `port`/`host`: every request goes through the Effect pipeline (`httpServer`). */
export const listeningServer = (options: { readonly port: number; readonly host: string }) =>
  listening(options, (server) => httpServer(server))

/** GET /health alone on `port`/`host`, for the producer and consumer processes (HEALTH_PORT). */
export const healthListeningServer = (options: { readonly port: number; readonly host: string }) => listening(options, healthServer)
