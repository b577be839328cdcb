/**
 * The /v1 answers, byte for byte: status, headers (in order) and body of every status the routes give,
 * compared with a fixture recorded from the code before the hot path was rewritten (issue 12). Only what
 * varies from run to run is normalised: tokens, times, request ids, seconds-until values and signatures.
 * Re-record (only when an answer is meant to change): RECORD_ANSWERS=1 npx vitest run test/api/answers.test.ts
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, sha256Hex, type TestApp } from '../support/app.js'
import { sleep } from '../../src/time.js'
import { bearer, keys, startApiWorld, type ApiWorld } from './world.js'

const fixtureFile = new URL('fixtures/answers.json', import.meta.url)
const record = process.env.RECORD_ANSWERS === '1'

/** Headers that differ per run or per transport, not per answer. */
const droppedHeaders = new Set(['date', 'connection', 'keep-alive'])
/** Headers whose value is a count of seconds until something (a window end, a retry). */
const secondsHeaders = new Set(['x-ratelimit-reset', 'retry-after'])
const isoTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

interface Answer {
  request: string
  status: number
  headers: Array<[string, string]>
  body: unknown
}

/** Replaces what varies between runs with a placeholder naming its kind; everything else is kept. */
function normaliseBody (value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map(item => normaliseBody(item))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, normaliseBody(inner, name)]))
  }
  if (typeof value === 'string') {
    if (['access_token', 'request_id'].includes(key)) return `<${key}>`
    if (key.startsWith('X-') || key.startsWith('x-')) return `<${key}>`
    if (isoTime.test(value)) return '<iso time>'
    // "retry in 43 seconds": the seconds left in the window.
    return value.replace(/retry in \d+ (second|seconds|minute)\b/, 'retry in <n> seconds')
  }
  if (typeof value === 'number' && ['expires_in', 'retry_after', 'consecutive_failures'].includes(key)) return `<${key}>`
  return value
}

function normalise (request: string, response: LightMyRequestResponse): Answer {
  const requestId = response.headers['x-request-id']
  const headers: Array<[string, string]> = []
  for (const [name, value] of Object.entries(response.headers)) {
    if (droppedHeaders.has(name)) continue
    const text = String(value)
    if (name === 'x-request-id') headers.push([name, text === requestId && text.length > 0 ? '<request id>' : text])
    else if (secondsHeaders.has(name)) headers.push([name, /^\d+$/.test(text) ? '<seconds>' : text])
    // The body length moves with the digits of expires_in and the like; the body itself is compared.
    else if (name === 'content-length') headers.push([name, '<length>'])
    else headers.push([name, text])
  }
  const contentType = String(response.headers['content-type'] ?? '')
  const json = contentType.includes('json') && response.body !== ''
  const body = json ? normaliseBody(JSON.parse(response.body)) : response.body
  if (json && (body as { request_id?: unknown }).request_id !== undefined) {
    expect(JSON.parse(response.body).request_id, `${request}: request_id is the x-request-id`).toBe(requestId)
  }
  return { request, status: response.statusCode, headers, body }
}

/** Fixed one-minute rate-limit windows: start well before an edge so remaining counts do not reset midway. */
async function awayFromWindowEdge (needMs: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000)
  if (left < needMs) await sleep(left + 50)
}

const emptySha = createHash('sha256').update('').digest('hex')

describe('/v1 answers are unchanged (status, headers, body)', () => {
  let world: ApiWorld
  let limited: TestApp
  const answers: Answer[] = []

  beforeAll(async () => {
    world = await startApiWorld({ env: { RATE_LIMIT_PER_MINUTE: '1000' } })
    limited = await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'limited', api_key_sha256: sha256Hex('limited-key-0123456789') }],
        credentials: [{ id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['limited'] }]
      },
      secrets: { 'secret/sir': { secretKey: 'sk_test_rate', hmacSecret: 'ab'.repeat(32), webhookSecret: 'whsec_rate' } },
      env: { RATE_LIMIT_PER_MINUTE: '2' }
    })
    await awayFromWindowEdge(25_000)
    const ask = async (name: string, options: InjectOptions, app = world.testApp.app): Promise<void> => {
      answers.push(normalise(name, await app.inject(options)))
    }
    const token = (id: string, query = '', key: string | null = keys.service): InjectOptions =>
      ({ url: `/v1/credentials/${id}/token${query}`, headers: key === null ? {} : bearer(key) })

    // 200: a mint, then local-cache hits with and without min_ttl, a scoped grant, a front-end caller.
    await ask('token kivra, first (mint)', token('kivra', '?min_ttl=60'))
    await ask('token kivra, cache hit', token('kivra', '?min_ttl=60'))
    await ask('token kivra, no min_ttl', token('kivra'))
    await ask('token kivra, min_ttl=0', token('kivra', '?min_ttl=0'))
    await ask('token kivra, unknown query parameter', token('kivra', '?min_ttl=30&other=1'))
    await ask('token kivra, scoped', token('kivra', '?scope=post:kivra.v1.tenant.example.content'))
    await ask('token oauth2-short, front-end caller', token('oauth2-short', '?min_ttl=10', keys.frontend))
    // 401: no, empty, malformed and unknown credentials, before anything else is looked at.
    await ask('token, no Authorization', token('kivra', '', null))
    await ask('token, empty Authorization', { url: '/v1/credentials/kivra/token', headers: { authorization: '' } })
    await ask('token, Basic scheme', { url: '/v1/credentials/kivra/token', headers: { authorization: 'Basic eDp5' } })
    await ask('token, unknown key', token('kivra', '', 'not-a-key-of-anyone'))
    await ask('token, JWT-shaped without caller_jwt', token('kivra', '', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'))
    await ask('token, unauthenticated unknown credential', token('does-not-exist', '', null))
    // 403: not listed, backend-only to a front-end caller, a scope not allowed, an admin route.
    await ask('token, caller not listed', token('kivra', '', keys.other))
    await ask('token, front-end caller on backend-only', token('kivra', '', keys.frontend))
    await ask('token, scope not allowed', token('kivra', '?scope=other.scope'))
    await ask('admin list, not an admin', { url: '/v1/admin/credentials', headers: bearer(keys.service) })
    // 404, 400 (bad id, bad min_ttl), 409, 422.
    await ask('token, unknown credential', token('no-such-credential'))
    await ask('token, malformed id', token('Not_An-Id!'))
    await ask('token, id too long', token('a'.repeat(65)))
    await ask('token, bad percent-encoding', token('%zz'))
    for (const query of ['?min_ttl=-1', '?min_ttl=abc', '?min_ttl=1.5', '?min_ttl=', '?min_ttl=0x10', '?min_ttl=1e3', '?min_ttl=90000', '?min_ttl=1&min_ttl=2', '?min_ttl=0001', '?min_ttl=28801', '?min_ttl=1234567890']) {
      await ask(`token kivra ${query}`, token('kivra', query))
    }
    await ask('token, unknown credential with bad min_ttl', token('no-such-credential', '?min_ttl=abc'))
    await ask('token, signing credential', token('sir'))
    await ask('token, scope on kigo', token('kigo', '?scope=x'))
    await ask('token oauth2-short, min_ttl above its lifetime', token('oauth2-short', '?min_ttl=200'))
    // 502, 503: provider failures.
    await ask('token, provider rejects credentials', token('kivra-rejecting'))
    await ask('token, provider 503', token('kigo-down'))
    await ask('token, provider drops', token('klavi-dropping'))
    // The other /v1 routes through the same hooks.
    await ask('credential list', { url: '/v1/credentials', headers: bearer(keys.other) })
    await ask('signature', { method: 'POST', url: '/v1/credentials/sir/signatures', headers: bearer(keys.service), payload: { method: 'GET', path: '/v1/partner/x', body_sha256: emptySha } })
    await ask('webhook verification', { method: 'POST', url: '/v1/credentials/sir/webhook-verifications', headers: bearer(keys.service), payload: { headers: {}, body: '' } })
    await ask('signature, bad body', { method: 'POST', url: '/v1/credentials/sir/signatures', headers: bearer(keys.service), payload: { method: 'GET' } })
    await ask('admin refresh, unknown credential', { method: 'POST', url: '/v1/admin/credentials/nope/refresh', headers: bearer(keys.admin) })
    await ask('HEAD token', { method: 'HEAD', url: '/v1/credentials/kivra/token', headers: bearer(keys.service) })
    // 429 with its rate-limit headers (limit 2 a minute).
    const limitedKey = 'limited-key-0123456789'
    for (let i = 1; i <= 3; i++) await ask(`limited token request ${i}`, token('sir', '', limitedKey), limited.app)
    await ask('limited list after the limit', { url: '/v1/credentials', headers: bearer(limitedKey) }, limited.app)
    await ask('limited, unauthenticated (not counted)', token('sir', '', null), limited.app)
  })
  afterAll(async () => {
    await limited?.close()
    await world?.close()
  })

  it('answers every recorded request exactly as before', () => {
    if (record || !existsSync(fixtureFile)) {
      // Recording is explicit: a missing fixture fails the test after writing it, so it is never silently new.
      writeFileSync(fixtureFile, `${JSON.stringify(answers, null, 2)}\n`)
      expect(record, 'fixture recorded; run again without RECORD_ANSWERS').toBe(true)
      return
    }
    const recorded = JSON.parse(readFileSync(fixtureFile, 'utf8')) as Answer[]
    expect(answers.map(answer => answer.request)).toEqual(recorded.map(answer => answer.request))
    for (const [index, answer] of answers.entries()) expect(answer, answer.request).toEqual(recorded[index])
  })
})
