import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod'
import { BrokerError, errorTable, type ErrorCode } from './errors.js'

/** An RFC 9457 problem document, as every error of the API is answered. */
export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  instance: string
  request_id: string
  retry_after?: number
  errors?: Array<{ path: string, message: string }>
  [extension: string]: unknown
}

export const problemContentType = 'application/problem+json; charset=utf-8'

/** Maps Fastify's own error codes (body parsing, limits, routing) onto our table. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'CB_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'CB_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'CB_BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'CB_BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'CB_BAD_REQUEST',
  FST_ERR_VALIDATION: 'CB_BAD_REQUEST',
  FST_ERR_BAD_URL: 'CB_BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'CB_BAD_REQUEST',
  // An over-long path parameter: no credential id is that long (64 at most).
  FST_ERR_MAX_PARAM_LENGTH: 'CB_BAD_REQUEST'
}

function problemDocument (code: ErrorCode, detail: string, instance: string, requestId: string): Problem {
  const entry = errorTable[code]
  return {
    type: `urn:credential-broker:problem:${code.slice(3).toLowerCase().replaceAll('_', '-')}`,
    title: entry.title,
    status: entry.status,
    detail,
    code,
    instance,
    request_id: requestId
  }
}

function problemFor (code: ErrorCode, detail: string, request: FastifyRequest): Problem {
  return problemDocument(code, detail, request.url.split('?')[0] ?? request.url, request.id)
}

function send (reply: FastifyReply, problem: Problem, retryAfterSeconds?: number): FastifyReply {
  if (retryAfterSeconds !== undefined) {
    const seconds = Math.max(1, Math.ceil(retryAfterSeconds))
    void reply.header('retry-after', String(seconds))
    problem.retry_after = seconds
  }
  return reply.code(problem.status).header('content-type', problemContentType).header('cache-control', 'no-store').send(problem)
}

/**
 * Fastify's `frameworkErrors` option: errors raised while routing, before any route or error handler
 * exists (a malformed percent-encoding, an over-long path parameter). Without it Fastify answers those
 * with its own application/json body. Pass it to the Fastify constructor.
 */
export function frameworkErrorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const code = fastifyCodes[error.code] ?? 'CB_BAD_REQUEST'
  // No route context yet, so the app's onSend hook does not run: set what it would have set.
  void reply.header('x-request-id', request.id)
  void send(reply, problemFor(code, code === 'CB_BAD_REQUEST' ? 'the request URL is not valid' : error.message, request))
}

/** The bytes of a whole problem+json answer that closes its connection, for answers given before Fastify has a request. */
function rawProblem (code: ErrorCode, detail: string): { status: number, headers: Record<string, string>, body: string } {
  const requestId = randomUUID()
  // No request line could be trusted, so no path is echoed: the instance is the root.
  const body = JSON.stringify(problemDocument(code, detail, '/', requestId))
  return {
    status: errorTable[code].status,
    headers: { 'content-type': problemContentType, 'cache-control': 'no-store', 'x-request-id': requestId, 'content-length': String(Buffer.byteLength(body)), connection: 'close' },
    body
  }
}

/** Answers on a bare socket (a framing error, a CONNECT) and closes it once the answer is written. */
export function writeSocketProblem (socket: Duplex, code: ErrorCode, detail: string): void {
  if (!socket.writable) { socket.destroy(); return }
  const { status, headers, body } = rawProblem(code, detail)
  const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  // end() alone would leave a half-open socket to a client that never closes its side (a slow-header one).
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${head}\r\n${body}`, () => socket.destroy())
}

/** Answers on a Node response before Fastify routes the request (a request the server refuses to route). */
export function writeResponseProblem (response: ServerResponse, code: ErrorCode, detail: string): void {
  const { status, headers, body } = rawProblem(code, detail)
  response.writeHead(status, headers).end(body)
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser rejects before there is a request (a malformed
 * request line, a bad Content-Length, Content-Length with chunked encoding, headers over the size limit, a
 * request that did not arrive within headersTimeout/requestTimeout). Fastify's default answers those with
 * its own application/json body. The error's rawPacket holds the request bytes (an Authorization header
 * perhaps) and is never logged.
 */
export function clientErrorHandler (this: FastifyInstance, error: ConnectionError, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  this.log.debug({ code: error.code }, 'client error')
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') writeSocketProblem(socket, 'CB_REQUEST_TIMEOUT', 'the request did not arrive in time')
  else if (error.code === 'HPE_HEADER_OVERFLOW') writeSocketProblem(socket, 'CB_REQUEST_HEADERS_TOO_LARGE', 'the request headers are over the size limit')
  else writeSocketProblem(socket, 'CB_BAD_REQUEST', 'the request is not valid HTTP/1.1')
}

/**
 * Installs the one error handler and not-found handler. Only our own errors' messages reach a caller;
 * anything else becomes CB_INTERNAL with a generic detail, so no upstream body, stack or secret leaks.
 */
export function registerProblemHandlers (app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | BrokerError, request, reply) => {
    if (error instanceof BrokerError) {
      if (error.statusCode >= 500) request.log.warn({ err: error }, 'request failed')
      const problem = problemFor(error.code, error.message, request)
      if (error.extensions !== undefined) Object.assign(problem, error.extensions)
      return send(reply, problem, error.retryAfterSeconds)
    }
    if (hasZodFastifySchemaValidationErrors(error)) {
      const problem = problemFor('CB_BAD_REQUEST', `invalid ${error.validationContext ?? 'request'}`, request)
      problem.errors = error.validation.map(issue => ({
        path: `${error.validationContext ?? 'request'}${issue.instancePath.replaceAll('/', '.')}`,
        message: issue.message ?? 'invalid'
      }))
      return send(reply, problem)
    }
    const mapped = error.code === undefined ? undefined : fastifyCodes[error.code]
    if (mapped !== undefined) {
      // Fastify's messages for these are fixed texts about the request itself, safe to show.
      return send(reply, problemFor(mapped, error.message, request))
    }
    if (error.statusCode === 429) {
      // @fastify/rate-limit throws a plain error with statusCode 429 and no code unless its
      // errorResponseBuilder is set (src/auth/rate-limit.ts sets it); keep the shape either way.
      const retryAfter = Number(reply.getHeader('retry-after'))
      return send(reply, problemFor('CB_RATE_LIMITED', 'too many requests from this caller', request), Number.isFinite(retryAfter) ? retryAfter : 1)
    }
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return send(reply, problemFor('CB_BAD_REQUEST', 'the request could not be processed', request))
    }
    request.log.error({ err: error }, 'unhandled error')
    return send(reply, problemFor('CB_INTERNAL', 'an internal error occurred; see the broker log for this request id', request))
  })

  app.setNotFoundHandler((request, reply) => {
    return send(reply, problemFor('CB_ROUTE_NOT_FOUND', `no route for ${request.method} at this path`, request))
  })
}

export { BrokerError }
