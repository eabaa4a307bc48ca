import { Inject, Injectable } from '@nestjs/common';
import { AuthStrategyName } from '../auth.constants';
import { createRemoteJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from '../auth.module-definition';
import { AuthError, type AuthStrategy, type Credentials, type Principal } from '../auth.types';

/** JWTs are compact and small; anything longer is refused before any crypto runs. */
const MAX_TOKEN_LENGTH = 8192;

/**
 * Bearer JWTs verified with `jose`: HS256 with `AUTH_JWT_SECRET`, or RS256/ES256 with keys from
 * `AUTH_JWKS_URL` (cached; an unknown `kid` refetches the set, which is how key rotation is picked up).
 * The algorithm list is fixed per mode, so `alg: none` and algorithm confusion are refused.
 */
@Injectable()
@AuthStrategyName('jwt')
export class JwtStrategy implements AuthStrategy {
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly algorithms: string[];

  constructor(@Inject(AUTH_MODULE_OPTIONS) private readonly options: AuthModuleOptions) {
    const { secret, jwksUrl } = options.jwt;
    if (jwksUrl) {
      this.key = createRemoteJWKSet(new URL(jwksUrl), {
        cacheMaxAge: 10 * 60_000,
        cooldownDuration: options.jwt.jwksCooldownMs,
      });
      this.algorithms = ['RS256', 'ES256'];
    } else if (secret) {
      this.key = new TextEncoder().encode(secret);
      this.algorithms = ['HS256'];
    } else {
      throw new Error('AUTH_MODE=jwt needs AUTH_JWT_SECRET or AUTH_JWKS_URL');
    }
  }

  async authenticate(credentials: Credentials): Promise<Principal> {
    const token = credentials.bearer;
    if (!token) {
      throw new AuthError(
        'unauthorized',
        credentials.transport === 'socket.io'
          ? 'A token is required in the handshake: io(url, { auth: { token } }).'
          : 'A bearer token is required (Authorization: Bearer <token>).',
      );
    }
    if (token.length > MAX_TOKEN_LENGTH) {
      throw new AuthError('unauthorized', 'The token is not valid.');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key as Uint8Array, {
        algorithms: this.algorithms,
        issuer: this.options.jwt.issuer,
        audience: this.options.jwt.audience,
        clockTolerance: this.options.jwt.clockToleranceSec,
        // A token without exp would be good forever, on every socket it ever opened.
        requiredClaims: this.options.jwt.requireExp ? ['exp', 'sub'] : ['sub'],
      }));
    } catch (error) {
      throw new AuthError('unauthorized', reasonOf(error));
    }
    if (!payload.sub) {
      throw new AuthError('unauthorized', 'The token names no subject.');
    }
    const models = payload.models;
    if (
      models !== undefined &&
      !(Array.isArray(models) && models.every((model) => typeof model === 'string' && model !== ''))
    ) {
      throw new AuthError('unauthorized', 'The token’s models claim must be a list of model names.');
    }
    return {
      // Each part encoded (a ':' becomes %3A), so that no (iss, sub) pair can spell another's id.
      id: `jwt:${encodeURIComponent(payload.iss ?? '')}:${encodeURIComponent(payload.sub)}`,
      strategy: 'jwt',
      // The skew allowed when the token was verified is allowed on every later check too (socket events).
      expiresAt:
        payload.exp === undefined ? undefined : (payload.exp + this.options.jwt.clockToleranceSec) * 1000,
      claims: payload,
      ...(models === undefined ? {} : { models: models as string[] }),
    };
  }
}

/** Says which check failed without echoing any part of the token. */
function reasonOf(error: unknown): string {
  if (error instanceof errors.JWTExpired) {
    return 'The token has expired.';
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return error.reason === 'missing'
      ? `The token has no ${error.claim} claim.`
      : `The token's ${error.claim} claim is not accepted.`;
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return 'The token is signed by an unknown key.';
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return 'The token signature is not valid.';
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return 'The token algorithm is not accepted.';
  }
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JOSEError) {
    return error instanceof errors.JWKSTimeout
      ? 'The signing keys could not be fetched.'
      : 'The token is not valid.';
  }
  return 'The token is not valid.';
}
