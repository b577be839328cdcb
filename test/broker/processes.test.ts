import { describe, expect, it } from 'vitest'
import { testRedisUrl } from '../support/redis.js'
import { expectOneMintPerCycle } from './amplification.js'

describe('three broker processes under HTTP load', () => {
  it('mint once per refresh cycle and never hand out an expired token', async () => {
    expect(await expectOneMintPerCycle({ redisUrl: testRedisUrl() })).toBe(1)
  }, 60_000)
})
