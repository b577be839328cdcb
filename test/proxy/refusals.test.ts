/**
 * What the proxy refuses, and how it answers when the upstream fails: every refusal is problem+json with
 * a stable code and nothing reaches the upstream (its stand-in counts zero requests).
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keys, rawRequest, send, startProxyWorld, type Answer, type ProxyWorld } from './world.js'

const auth = { authorization: `Bearer ${keys.service}` }

function problemOf (answer: Answer): Record<string, unknown> {
  expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8')
  return JSON.parse(answer.body.toString()) as Record<string, unknown>
}

describe('ANY /v1/credentials/:id/proxy/*: refusals and upstream failures', () => {
  let world: ProxyWorld
  beforeAll(async () => { world = await startProxyWorld() })
  afterAll(async () => { await world.close() })

  /** Runs `run` and expects that the API stand-in received nothing meanwhile. */
  async function nothingSent<T> (run: () => Promise<T>): Promise<T> {
    const before = world.api.requests.length
    const result = await run()
    expect(world.api.requests.length, 'requests that reached the upstream').toBe(before)
    return result
  }

  describe('paths that would leave the API base → 400 CB_BAD_REQUEST, nothing sent', () => {
    it.each([
      ['a dot-dot segment', 'v1/../../token'],
      ['a leading dot-dot', '../admin/credentials'],
      ['a single dot segment', './v1'],
      ['an encoded dot-dot', 'v1/%2e%2e/%2E%2E/token'],
      ['a leading encoded dot-dot', '%2e%2e/token'],
      ['a half-encoded dot-dot', 'v1/.%2E/token'],
      ['an encoded dot', 'v1/%2e/x'],
      ['an encoded slash', 'v1/a%2Fb'],
      ['an encoded slash, lower case', 'v1/..%2f..%2ftoken'],
      ['an encoded backslash', 'v1/a%5cb'],
      ['a backslash', 'v1\\..\\token'],
      ['a double slash', 'v1//evil'],
      ['a protocol-relative URL', '/evil.example/x'],
      ['an absolute URL', 'https://evil.example/x'],
      ['an encoded NUL', 'v1/a%00b'],
      ['an encoded control character', 'v1/a%0d%0aX-Injected:%201'],
      ['a malformed escape', 'v1/a%zzb'],
      ['an escape that is not UTF-8 (the router cannot decode it)', 'v1/%aa'],
      ['a quote and angle brackets', 'v1/<script>"x"'],
      ['a fragment', 'v1/a#b'],
      ['a fragment in the query', 'v1/echo?a=1#b']
    ])('%s', async (_name, path) => {
      const answer = await nothingSent(async () => await rawRequest(world.port, { path: `/v1/credentials/kivra/proxy/${path}`, headers: auth }))
      expect(answer.status).toBe(400)
      expect(JSON.parse(answer.body.slice(answer.body.indexOf('{'), answer.body.lastIndexOf('}') + 1))).toMatchObject({ code: 'CB_BAD_REQUEST' })
    })

    it('a raw NUL is refused by the HTTP parser itself (400), nothing sent', async () => {
      const answer = await nothingSent(async () => await rawRequest(world.port, { path: '/v1/credentials/kivra/proxy/v1/a\u0000b', headers: auth }))
      expect(answer.status).toBe(400)
    })

    it('whatever path a caller writes, what reaches the upstream is that path under the base, unnormalised', async () => {
      const alphabet = fc.constantFrom('a', 'b', '.', '/', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '0', '\\', '?', '#', ':', '@', '&', '=', '+', ';', '~', '"', '<')
      let forwarded = 0
      await fc.assert(fc.asyncProperty(fc.array(alphabet, { maxLength: 14 }).map(chars => chars.join('')), async (path) => {
        const before = world.api.requests.length
        const answer = await rawRequest(world.port, { path: `/v1/credentials/kivra/proxy/${path}`, headers: auth })
        const sent = world.api.requests.slice(before)
        if (answer.status === 400) { expect(sent).toEqual([]); return }
        expect(sent).toHaveLength(1)
        forwarded++
        const url = sent[0]?.url as string
        expect(url).toBe(`/api/${path}`)
        // A URL parser finds the same path there: nothing to normalise, so nothing can climb out.
        expect(new URL(url, 'http://upstream.test').pathname).toBe(`/api/${path.split('?')[0] as string}`)
      }), { numRuns: 250 })
      expect(forwarded).toBeGreaterThan(20)
    }, 60_000)
  })

  describe('policy', () => {
    it('401 without caller credentials, nothing sent', async () => {
      expect(problemOf(await nothingSent(async () => await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo' })))).toMatchObject({ code: 'CB_UNAUTHENTICATED' })
    })

    it('403 for a caller the credential does not list, nothing sent and no token minted', async () => {
      const mints = world.kivra.mints
      const answer = await nothingSent(async () => await send(world.port, { method: 'POST', path: '/v1/credentials/kivra/proxy/v1/echo', headers: { authorization: `Bearer ${keys.other}` }, body: 'x' }))
      expect(answer.status).toBe(403)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_FORBIDDEN' })
      expect(world.kivra.mints).toBe(mints)
    })

    it('404 for an unknown credential', async () => {
      expect(problemOf(await nothingSent(async () => await send(world.port, { path: '/v1/credentials/nope/proxy/v1/echo', headers: auth })))).toMatchObject({ code: 'CB_CREDENTIAL_NOT_FOUND' })
    })

    it.each([
      ['a method outside proxy.methods', 'PUT', '/v1/public/echo'],
      ['a path outside proxy.allowed_paths', 'GET', '/v1/private/echo'],
      ['a path that only starts with the same letters', 'GET', '/v1/publicity/echo'],
      ['a path below a prefix without a trailing slash, by its letters only', 'GET', '/v2/echoes'],
      ['an allowed prefix spelt with an escape', 'GET', '/v1/publi%63/echo']
    ])('403 for %s, nothing sent', async (_name, method, path) => {
      const answer = await nothingSent(async () => await send(world.port, { method, path: `/v1/credentials/kivra-narrow/proxy${path}`, headers: auth }))
      expect(answer.status).toBe(403)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_FORBIDDEN' })
    })

    it.each([['/v1/public/echo'], ['/v2/echo']])('an allowed method and path pass (%s)', async (path) => {
      expect((await send(world.port, { path: `/v1/credentials/kivra-narrow/proxy${path}`, headers: auth })).status).toBe(201)
    })

    it('413 for a body over the credential\'s proxy.body_limit, nothing sent; at the limit it passes', async () => {
      const path = '/v1/credentials/kivra-narrow/proxy/v1/public/echo'
      const over = await nothingSent(async () => await send(world.port, { method: 'POST', path, headers: { ...auth, 'content-type': 'text/plain' }, body: 'x'.repeat(17) }))
      expect(over.status).toBe(413)
      expect(problemOf(over)).toMatchObject({ code: 'CB_PAYLOAD_TOO_LARGE' })
      expect((await send(world.port, { method: 'POST', path, headers: { ...auth, 'content-type': 'text/plain' }, body: 'x'.repeat(16) })).status).toBe(201)
    })

    it('413 for a body over the default limit (1 MiB), nothing sent', async () => {
      const answer = await nothingSent(async () => await send(world.port, { method: 'POST', path: '/v1/credentials/kivra/proxy/v1/echo', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(1_048_577) }))
      expect(answer.status).toBe(413)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_PAYLOAD_TOO_LARGE' })
    })

    it('409 for an oauth2 credential without api_base_url', async () => {
      const answer = await send(world.port, { path: '/v1/credentials/oauth2/proxy/v1/echo', headers: auth })
      expect(answer.status).toBe(409)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_UNSUPPORTED_OPERATION' })
    })
  })

  describe('upstream failures', () => {
    it('504 CB_UPSTREAM_TIMEOUT when the answer\'s headers do not come within proxy.timeout_ms', async () => {
      const answer = await send(world.port, { path: '/v1/credentials/kivra-quick/proxy/v1/slow', headers: auth })
      expect(answer.status).toBe(504)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_UPSTREAM_TIMEOUT' })
    })

    it('a body that stalls after the headers is cut off after proxy.timeout_ms instead of hanging', async () => {
      const outcome = await new Promise<{ status: number, body: string, complete: boolean }>((resolve) => {
        let body = ''
        let status = 0
        const done = (complete: boolean): void => { resolve({ status, body, complete }) }
        void import('node:http').then(({ get }) => {
          get({ host: '127.0.0.1', port: world.port, path: '/v1/credentials/kivra-quick/proxy/v1/stall-body', headers: auth }, (res) => {
            status = res.statusCode ?? 0
            res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
            res.on('end', () => { done(res.complete) })
            res.on('error', () => { done(false) })
          }).on('error', () => { done(false) })
        })
      })
      expect(outcome).toEqual({ status: 200, body: 'first;', complete: false })
    })

    it('502 CB_UPSTREAM_UNAVAILABLE when nothing listens at the API base', async () => {
      const answer = await send(world.port, { path: '/v1/credentials/kivra-dead/proxy/v1/echo', headers: auth })
      expect(answer.status).toBe(502)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_UPSTREAM_UNAVAILABLE' })
    })

    it('logs the 502 and 504 as expected failures: message and code, no stack (below debug)', () => {
      const failed = world.testApp.logs.entries().filter(entry => entry.msg === 'request failed')
      const codes = failed.map(entry => (entry.err as Record<string, unknown>).code)
      expect(codes).toEqual(expect.arrayContaining(['CB_UPSTREAM_TIMEOUT', 'CB_UPSTREAM_UNAVAILABLE']))
      for (const entry of failed.filter(line => String((line.err as Record<string, unknown>).code).startsWith('CB_UPSTREAM_'))) {
        expect(entry.err).toMatchObject({ message: expect.any(String) as string })
        expect(entry.err).not.toHaveProperty('stack')
      }
    })

    it('no token, secret or caller key is in any log line, failures included', async () => {
      const text = world.testApp.logs.text()
      expect(world.kivra.issuedTokens.length).toBeGreaterThan(0)
      for (const token of world.kivra.issuedTokens) expect(text).not.toContain(token)
      expect(text).not.toContain(keys.service)
      expect(text).not.toContain(world.kivra.secret.client_secret as string)
    })

    it('503 with Retry-After when no usable token can be had, nothing sent', async () => {
      const answer = await nothingSent(async () => await send(world.port, { path: '/v1/credentials/kivra-down/proxy/v1/echo', headers: auth }))
      expect(answer.status).toBe(503)
      expect(problemOf(answer)).toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE' })
      expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0)
    })
  })
})
