import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errorTable } from '../../src/errors.js'
import { buildTestApp, exampleApiKey, type TestApp } from '../support/app.js'
import { rawExchange } from '../support/raw-http.js'

/**
 * What a client can send that no HTTP library would: each answer must be problem+json with a code from
 * the table whose status is the answer's status, never Fastify's or Node's own body.
 */
describe('framing errors are problem+json too (raw sockets against a listening app)', () => {
  let testApp: TestApp
  let port: number
  beforeAll(async () => {
    testApp = await buildTestApp({ store: 'memory' })
    await testApp.app.listen({ port: 0, host: '127.0.0.1' })
    port = (testApp.app.server.address() as AddressInfo).port
  })
  afterAll(async () => { await testApp.close() })

  const auth = `Authorization: Bearer ${exampleApiKey}\r\n`
  const cases: Array<{ name: string, request: string, status: number, code: string }> = ([
    ['TRACE with a chunked body', 'TRACE / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 404, 'CB_ROUTE_NOT_FOUND'],
    ['a malformed request line', 'GARBAGE\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['an unknown HTTP version', 'GET /healthz HTTP/7.3\r\nHost: x\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['a non-numeric Content-Length', 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['Content-Length together with chunked', 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['two different Content-Lengths', 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', 400, 'CB_BAD_REQUEST'],
    ['headers over the size limit', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'CB_REQUEST_HEADERS_TOO_LARGE'],
    ['an HTTP/1.1 request without Host', 'GET /healthz HTTP/1.1\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['bad percent-encoding in the path', 'GET /v1/credentials/%zz/token HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'CB_BAD_REQUEST'],
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 404, 'CB_ROUTE_NOT_FOUND'],
    ['a body declared over the limit', `POST /v1/credentials/x/signatures HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{`, 413, 'CB_PAYLOAD_TOO_LARGE'],
    ['an unsupported media type', `POST /v1/credentials/x/signatures HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: text/xml\r\nContent-Length: 4\r\n\r\n<x/>`, 415, 'CB_UNSUPPORTED_MEDIA_TYPE']
  ] as const).map(([name, request, status, code]) => ({ name, request, status, code }))

  it.each(cases)('$name: $status $code', async ({ request, status, code }) => {
    const answer = await rawExchange(port, request, 3000)
    expect(answer.status, answer.text.slice(0, 200)).toBe(status)
    expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8')
    const problem = JSON.parse(answer.body) as { code: keyof typeof errorTable, status: number, request_id: string }
    expect(problem).toMatchObject({ code, status })
    expect(errorTable[problem.code].status).toBe(status)
    expect(problem.request_id).toMatch(/\S/)
    expect(answer.body).not.toContain(exampleApiKey)
  })
})
