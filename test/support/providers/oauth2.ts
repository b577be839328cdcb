// The stand-ins ship in the build (the embedded default serves with them): src/embedded/stand-ins/.
export * from '../../../src/embedded/stand-ins/oauth2.js'
