import { Module } from '@nestjs/common';
import { OpenAiCompatController } from './openai-compat.controller';
import { OpenAiRelay } from './openai-relay.service';

/**
 * The OpenAI-compatible surface (`/v1`), a sibling of the SSE and Socket.IO transports over the same guard, limits
 * and metrics; it relays the upstream's chunks instead of our events. Needs the global completion and streams
 * modules, and `OpenAiErrorFilter` installed globally (see create-app).
 */
@Module({ controllers: [OpenAiCompatController], providers: [OpenAiRelay] })
export class OpenAiCompatModule {}
