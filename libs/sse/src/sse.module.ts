import { Module } from '@nestjs/common';
import { SseWriterController } from './sse-writer.controller';
import { SseController } from './sse.controller';

/**
 * The SSE transport; needs the global `StreamRegistry`. Temporarily (issue 12), `SSE_IMPLEMENTATION=writer`
 * serves the hand-written writer instead of `@Sse()`, so that one bench run can measure both.
 */
@Module({
  controllers: [process.env['SSE_IMPLEMENTATION'] === 'writer' ? SseWriterController : SseController],
})
export class SseModule {}
