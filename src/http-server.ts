/**
 * The HTTP server under Fastify and its connection policy: timeouts that close slow or idle sockets, a cap
 * on open connections, answers that never come from outside the problem+json handler, and a drain on
 * shutdown that lets callers reusing keep-alive connections finish without a reset.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Server as NetServer } from 'node:net'
import type { Logger } from 'pino'
import { writeResponseProblem, writeSocketProblem } from './problem.js'

/**
 * Request headers must arrive within this: a socket that trickles them (a slow-header attack, or a broken
 * client) is answered 408 and closed. Internal callers send a few hundred bytes at once.
 */
export const headersTimeoutMs = 10_000
/** The whole request, body included (2 MB at most), must arrive within this. */
export const requestTimeoutMs = 20_000
/**
 * An idle keep-alive socket is closed after this. It is announced in `Keep-Alive: timeout=10`, which undici
 * and other clients honour (they stop reusing a socket shortly before), so the close races no request.
 */
export const keepAliveTimeoutMs = 10_000
/** How often Node checks the two request timeouts above (its default, 30 s, would let a socket live 40 s). */
const connectionsCheckingIntervalMs = 1_000
/** A socket with no traffic at all (no request begun) is closed after this. */
const socketTimeoutMs = 30_000
/** At most one warning per this long while connections are being refused at the cap. */
const dropWarningIntervalMs = 60_000

export interface HttpServerOptions {
  maxConnections: number
  log: Logger
}

export interface BrokerHttpServer {
  /** Fastify's `serverFactory`. */
  serverFactory: (handler: (request: IncomingMessage, response: ServerResponse) => void) => Server
  /** From now on every answer carries `Connection: close`. */
  closeConnectionsAfterAnswer: () => void
  /**
   * Offers every request to `lane` before Fastify (the token route's fast lane, routes/token-fast-lane.ts);
   * what it does not answer goes to Fastify. Not once shutdown has begun: those answers close their connection.
   */
  answerFirst: (lane: (request: IncomingMessage, response: ServerResponse) => boolean) => void
  /**
   * Shutdown, before Fastify's close: stop accepting connections, answer what arrives on the open ones
   * with `Connection: close`, and wait (at most `graceMs`) for them to close. Fastify's close then ends
   * the sockets that stayed idle throughout and waits for requests still running.
   */
  drain: (graceMs: number) => Promise<void>
}

export function createBrokerHttpServer (options: HttpServerOptions): BrokerHttpServer {
  let server: Server | undefined
  let closeAfterAnswer = false
  let lastDropWarning = 0
  let fastLane: ((request: IncomingMessage, response: ServerResponse) => boolean) | undefined

  function serverFactory (handler: (request: IncomingMessage, response: ServerResponse) => void): Server {
    server = createServer({
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: keepAliveTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingIntervalMs,
      // Node answers a missing Host with an empty 400; the check below answers it as problem+json.
      requireHostHeader: false
    }, (request, response) => {
      if (closeAfterAnswer) response.setHeader('connection', 'close')
      // (The lane takes only requests with a Host header: the check below stays in front of everything else.)
      else if (fastLane !== undefined && fastLane(request, response)) return
      // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
      if (request.headers.host === undefined && request.httpVersion === '1.1') {
        writeResponseProblem(response, 'CB_BAD_REQUEST', 'an HTTP/1.1 request needs a Host header')
        return
      }
      handler(request, response)
    })
    server.setTimeout(socketTimeoutMs)
    server.maxConnections = options.maxConnections
    server.on('drop', () => {
      const now = Date.now()
      if (now - lastDropWarning < dropWarningIntervalMs) return
      lastDropWarning = now
      options.log.warn({ maxConnections: options.maxConnections }, 'refusing connections: MAX_CONNECTIONS are open')
    })
    // No route takes CONNECT; without a listener Node would drop the socket without a word.
    server.on('connect', (_request: IncomingMessage, socket) => {
      writeSocketProblem(socket, 'CB_ROUTE_NOT_FOUND', 'no route for CONNECT')
    })
    return server
  }

  async function drain (graceMs: number): Promise<void> {
    closeAfterAnswer = true
    const listening = server
    if (listening?.listening !== true) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, graceMs)
      // net.Server's close, not http.Server's: that one also ends every idle keep-alive socket at once, and a
      // caller whose next request is already on the wire would get a reset. Here the listener stops (new
      // connections are refused cleanly) and each open connection closes after its next answer. The
      // callback runs once the last one has closed; Fastify's own close later is then a no-op.
      NetServer.prototype.close.call(listening, () => { clearTimeout(timer); resolve() })
    })
  }

  return { serverFactory, closeConnectionsAfterAnswer: () => { closeAfterAnswer = true }, answerFirst: lane => { fastLane = lane }, drain }
}
