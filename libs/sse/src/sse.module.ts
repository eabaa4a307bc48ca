import { Module } from '@nestjs/common';
import { SseController } from './sse.controller';

/** The SSE transport; needs the global `StreamRegistry`. */
@Module({ controllers: [SseController] })
export class SseModule {}
