import { describe, expect, it } from 'vitest'
import { fingerprint } from '../../src/broker/grant-identity.js'
import { createAuditTrail } from '../../src/observability/audit.js'
import type { Grant } from '../../src/providers/types.js'

/** The trail writing into an array, one parsed line per write. */
function trailIntoArray (): { lines: Array<Record<string, unknown>>, trail: ReturnType<typeof createAuditTrail> } {
  const lines: Array<Record<string, unknown>> = []
  const trail = createAuditTrail({ write: (chunk: string) => { for (const line of chunk.split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>); return true } })
  return { lines, trail }
}

const grant = (token: string, expiresAt: number): Grant => ({ accessToken: token, tokenType: 'Bearer', expiresAt, obtainedAt: expiresAt - 28_800_000 })

describe('the token line (audit trail hot path)', () => {
  it('names the grant, caller, credential, route and client of each line, whatever came before', () => {
    const { lines, trail } = trailIntoArray()
    const first = grant('token-one', Date.UTC(2026, 11, 2, 18))
    const second = grant('token-two', Date.UTC(2026, 11, 3, 2))
    // Alternating grants, callers, credentials, routes, clients and sources: a line built from the last
    // line's prefix or field would carry the wrong value.
    const sent = [
      { grant: first, caller: 'a', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', ip: '127.0.0.1', source: 'local' },
      { grant: first, caller: 'a', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', ip: '127.0.0.1', source: 'local' },
      { grant: first, caller: 'b', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', ip: '10.0.0.7', source: 'store' },
      { grant: second, caller: 'b', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', ip: '10.0.0.7', source: 'minted' },
      { grant: second, caller: 'b', credentialId: 'other', route: 'GET /v1/credentials/:id/token', ip: '10.0.0.7', source: 'local' },
      { grant: second, caller: 'b', credentialId: 'other', route: 'POST /v1/credentials/:id/token', ip: '10.0.0.8', source: 'local' },
      { grant: first, caller: 'a', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', ip: '127.0.0.1', source: 'local' }
    ]
    sent.forEach((line, index) => {
      trail.tokenIssued({ id: `00000000-0000-4000-8000-00000000000${index}`, ip: line.ip, callerRequestId: index === 2 ? 'caller-"id"' : undefined }, line)
    })
    expect(lines).toHaveLength(sent.length)
    lines.forEach((line, index) => {
      const expected = sent[index] as (typeof sent)[number]
      expect(line).toMatchObject({
        level: 30,
        audit: true,
        msg: 'token issued',
        outcome: 'issued',
        reqId: `00000000-0000-4000-8000-00000000000${index}`,
        caller: expected.caller,
        credentialId: expected.credentialId,
        route: expected.route,
        client: expected.ip,
        source: expected.source,
        fingerprint: fingerprint(expected.grant.accessToken),
        expiresAt: new Date(expected.grant.expiresAt).toISOString()
      })
      expect(line.caller_request_id).toBe(index === 2 ? 'caller-"id"' : undefined)
    })
  })

  it('leaves the client out when the address is unknown', () => {
    const { lines, trail } = trailIntoArray()
    trail.tokenIssued({ id: '00000000-0000-4000-8000-000000000000', ip: undefined, callerRequestId: undefined }, { grant: grant('t', Date.now() + 60_000), caller: 'a', credentialId: 'kivra', route: 'GET /v1/credentials/:id/token', source: 'local' })
    expect(lines[0]).not.toHaveProperty('client')
    expect(lines[0]).toMatchObject({ caller: 'a', source: 'local' })
  })
})
