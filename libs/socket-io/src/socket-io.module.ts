import { Module } from '@nestjs/common';
import { CompletionsGateway } from './completions.gateway';

/** The Socket.IO transport; needs the global `StreamRegistry`. */
@Module({ providers: [CompletionsGateway] })
export class SocketIoModule {}
