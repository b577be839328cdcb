import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createGrantCipher, keyId, parseEncryptionKeySpec } from '../../src/store/encryption.js'
import { captureLogs } from '../support/logs.js'
import { makeGrant, randomKey } from './helpers.js'
import { StoreError } from '../../src/errors.js'

describe('parseEncryptionKeySpec', () => {
  it('reads one base64 key, naming it by the first 8 hex characters of its sha256', () => {
    const key = randomKey()
    const [parsed, ...rest] = parseEncryptionKeySpec(key)
    expect(rest).toEqual([])
    expect(parsed?.key).toEqual(Buffer.from(key, 'base64'))
    expect(parsed?.kid).toBe(createHash('sha256').update(Buffer.from(key, 'base64')).digest('hex').slice(0, 8))
  })

  it('reads a list of "<kid>:<base64>" and bare keys in order, the first being the sealing key', () => {
    const [a, b] = [randomKey(), randomKey()]
    const keys = parseEncryptionKeySpec(`2025-06:${a}, ${b}`)
    expect(keys.map(entry => entry.kid)).toEqual(['2025-06', keyId(Buffer.from(b, 'base64'))])
  })

  it.each([
    ['a short key', Buffer.alloc(16).toString('base64')],
    ['something that is not base64', 'not base64 at all!'],
    ['an empty key id', `:${Buffer.alloc(32).toString('base64')}`],
    ['an empty entry', `${Buffer.alloc(32).toString('base64')},`],
    ['two keys under one id', `k:${randomKey()},k:${randomKey()}`],
    ['an unresolved Vault reference', 'vault:secret/broker#key']
  ])('refuses %s with a StoreError that does not quote the key', (_what, spec) => {
    let failure: unknown
    try {
      parseEncryptionKeySpec(spec)
    } catch (err) {
      failure = err
    }
    expect(failure).toBeInstanceOf(StoreError)
    expect((failure as StoreError).kind).toBe('invalid')
    for (const part of spec.split(/[,:]/).filter(part => part.length > 8)) {
      expect((failure as StoreError).message).not.toContain(part)
    }
  })

  it('accepts the same key listed twice', () => {
    const key = randomKey()
    expect(parseEncryptionKeySpec(`${key},${key}`)).toHaveLength(1)
  })
})

describe('createGrantCipher', () => {
  it('seals a grant into a {v,kid,iv,tag,ct} envelope without plaintext, and opens it again', () => {
    const logs = captureLogs()
    const cipher = createGrantCipher(`main:${randomKey()}`, { log: logs.log })
    const grant = makeGrant()
    const envelope = cipher.seal(grant, 'cb:{kivra-production}:grant')
    expect(Object.keys(envelope).sort()).toEqual(['ct', 'iv', 'kid', 'tag', 'v'])
    expect(envelope).toMatchObject({ v: 1, kid: 'main' })
    const text = JSON.stringify(envelope)
    expect(text).not.toContain(grant.accessToken)
    expect(text).not.toContain(grant.refreshToken)
    expect(cipher.open(envelope, 'cb:{kivra-production}:grant')).toEqual(grant)
    expect(logs.lines).toEqual([])
  })

  it('uses a fresh IV for every envelope', () => {
    const cipher = createGrantCipher(randomKey(), { log: captureLogs().log })
    const grant = makeGrant()
    const first = cipher.seal(grant, 'k')
    const second = cipher.seal(grant, 'k')
    expect(first.iv).not.toBe(second.iv)
    expect(first.ct).not.toBe(second.ct)
  })

  it('opens envelopes of every listed key but seals with the first (rotation)', () => {
    const [oldKey, newKey] = [randomKey(), randomKey()]
    const before = createGrantCipher(`old:${oldKey}`, { log: captureLogs().log })
    const after = createGrantCipher(`new:${newKey},old:${oldKey}`, { log: captureLogs().log })
    const grant = makeGrant()
    expect(after.open(before.seal(grant, 'k'), 'k')).toEqual(grant)
    expect(after.seal(grant, 'k').kid).toBe('new')
    expect(after.kids).toEqual(['new', 'old'])
  })

  it('treats an envelope of a key it does not hold as absent, with a warning naming the key id only', () => {
    const logs = captureLogs()
    const writer = createGrantCipher(`old:${randomKey()}`, { log: captureLogs().log })
    const reader = createGrantCipher(`new:${randomKey()}`, { log: logs.log })
    const grant = makeGrant()
    expect(reader.open(writer.seal(grant, 'k'), 'k')).toBeNull()
    expect(logs.messages()).toEqual(['stored grant is sealed with a key this replica does not hold (rotated away?); treating it as absent'])
    expect(JSON.parse(logs.lines[0] as string)).toMatchObject({ level: 40, kid: 'old', key: 'k' })
  })

  it('does not open an envelope under another storage key, or one sealed by another key with the same id', () => {
    const logs = captureLogs()
    const cipher = createGrantCipher(`same:${randomKey()}`, { log: logs.log })
    const impostor = createGrantCipher(`same:${randomKey()}`, { log: captureLogs().log })
    const grant = makeGrant()
    expect(cipher.open(cipher.seal(grant, 'cb:{a}:grant'), 'cb:{b}:grant')).toBeNull()
    expect(cipher.open(impostor.seal(grant, 'k'), 'k')).toBeNull()
    expect(logs.messages()).toEqual([
      'stored grant does not decrypt (wrong key, moved or tampered); treating it as absent',
      'stored grant does not decrypt (wrong key, moved or tampered); treating it as absent'
    ])
  })

  it('detects tampering with the ciphertext, the tag or the IV, and refuses a truncated tag', () => {
    const cipher = createGrantCipher(randomKey(), { log: captureLogs().log })
    const envelope = cipher.seal(makeGrant(), 'k')
    const flip = (base64: string): string => {
      const bytes = Buffer.from(base64, 'base64')
      bytes[0] = (bytes[0] as number) ^ 1
      return bytes.toString('base64')
    }
    expect(cipher.open({ ...envelope, ct: flip(envelope.ct) }, 'k')).toBeNull()
    expect(cipher.open({ ...envelope, tag: flip(envelope.tag) }, 'k')).toBeNull()
    expect(cipher.open({ ...envelope, iv: flip(envelope.iv) }, 'k')).toBeNull()
    expect(cipher.open({ ...envelope, tag: Buffer.from(envelope.tag, 'base64').subarray(0, 4).toString('base64') }, 'k')).toBeNull()
    expect(cipher.open(envelope, 'k')).not.toBeNull()
  })

  it('treats things that are not envelopes as absent instead of throwing', () => {
    const cipher = createGrantCipher(randomKey(), { log: captureLogs().log })
    for (const value of [null, 'text', 42, {}, { v: 2, kid: cipher.kid, iv: '', tag: '', ct: '' }]) {
      expect(cipher.open(value, 'k')).toBeNull()
    }
  })

  it('never writes the grant into its logs, even when opening fails', () => {
    const logs = captureLogs()
    const cipher = createGrantCipher(randomKey(), { log: logs.log })
    const grant = makeGrant()
    const envelope = cipher.seal(grant, 'k')
    cipher.open(envelope, 'other')
    cipher.open({ ...envelope, kid: 'gone' }, 'k')
    expect(logs.lines.length).toBe(2)
    expect(logs.text()).not.toContain(grant.accessToken)
    expect(logs.text()).not.toContain(grant.refreshToken)
  })

  it('generates a per-process key when none is configured, and says so', () => {
    const logs = captureLogs()
    const one = createGrantCipher(undefined, { log: logs.log })
    const two = createGrantCipher(undefined, { log: captureLogs().log })
    expect(one.ephemeral).toBe(true)
    expect(logs.messages()).toEqual(['no TOKEN_ENCRYPTION_KEY: grants are sealed with a per-process random key (embedded mode only)'])
    const grant = makeGrant()
    expect(one.open(one.seal(grant, 'k'), 'k')).toEqual(grant)
    // Another process (here: another cipher) has another key and cannot read it.
    expect(two.open(one.seal(grant, 'k'), 'k')).toBeNull()
  })
})
