import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { kindForStatus, parseRetryAfter, safeText, sendRequest } from '../../src/providers/http.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startScriptedServer, type ScriptedServer } from '../support/scripted-server.js'

describe('parseRetryAfter', () => {
  it('reads delay-seconds', () => {
    expect(parseRetryAfter('0', fixedNow)).toBe(0)
    expect(parseRetryAfter(' 120 ', fixedNow)).toBe(120_000)
  })

  it('reads an HTTP-date relative to now, and a past date as 0', () => {
    expect(parseRetryAfter(new Date(fixedNow + 45_000).toUTCString(), fixedNow)).toBe(45_000)
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', fixedNow)).toBe(0)
  })

  it('ignores garbage', () => {
    for (const value of [undefined, '', 'soon', '-5', '1.5', 'Sun, 99 Nov 1994 99:49:37 GMT']) {
      expect(parseRetryAfter(value, fixedNow)).toBeUndefined()
    }
  })
})

describe('kindForStatus', () => {
  it('retries 408, 425, 429 and 5xx; other 4xx are permanent; 1xx/3xx are unusable', () => {
    expect([408, 425, 429, 500, 502, 503, 504].map(kindForStatus)).toEqual(Array(7).fill('transient'))
    expect([400, 401, 403, 404, 409, 416].map(kindForStatus)).toEqual(Array(6).fill('permanent'))
    expect([101, 301, 302].map(kindForStatus)).toEqual(Array(3).fill('bad-response'))
  })
})

describe('safeText', () => {
  it('removes secret values, long token-like runs and control characters, and truncates', () => {
    const secret = { client_secret: 'hunter22' }
    expect(safeText('bad secret hunter22 given', secret)).toBe('bad secret *** given')
    expect(safeText('token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig was bad')).toBe('token *** was bad')
    const cleaned = safeText('line\nforged="yes"\u001b[31m')
    expect(cleaned).not.toContain('\n')
    expect(cleaned).not.toContain('\u001b')
    expect(safeText('x '.repeat(200)).length).toBeLessThanOrEqual(121)
  })
})

describe('sendRequest', () => {
  let server: ScriptedServer
  let url: string
  beforeAll(async () => {
    server = await startScriptedServer((request, res) => {
      if (request.path === '/huge') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(`"${'x'.repeat(300 * 1024)}"`)
        return
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo': 'yes' })
      res.end(JSON.stringify({ method: request.method, contentType: request.headers['content-type'] ?? null, accept: request.headers.accept, body: request.body }))
    })
    url = server.url
  })
  afterAll(async () => { await server.close() })

  const ctx = (): ReturnType<typeof testContext> => testContext(testCredential('kigo', { base_url: url }))

  it('sends JSON and form bodies with their content types and reads headers case-insensitively', async () => {
    const json = await sendRequest({ operation: 'test', method: 'POST', url: new URL(`${url}/echo`), json: { a: 1 } }, ctx())
    expect(JSON.parse(json.text)).toEqual({ method: 'POST', contentType: 'application/json', accept: 'application/json', body: '{"a":1}' })
    expect(json.header('X-Echo')).toBe('yes')
    const form = await sendRequest({ operation: 'test', method: 'POST', url: new URL(`${url}/echo`), form: new URLSearchParams({ a: 'b c' }) }, ctx())
    expect(JSON.parse(form.text)).toMatchObject({ contentType: 'application/x-www-form-urlencoded', body: 'a=b+c' })
  })

  it('refuses a body too large to be a token answer (bad-response)', async () => {
    const err = await providerError(sendRequest({ operation: 'test', method: 'GET', url: new URL(`${url}/huge`) }, ctx()))
    expect(err.kind).toBe('bad-response')
  })
})
