import { Module } from '@nestjs/common';
import { COMPLETION_PROVIDER } from './completion.constants';
import { CompletionModuleBase } from './completion.module-definition';
import { CompletionService } from './completion.service';

@Module({
  providers: [CompletionService],
  exports: [CompletionService, COMPLETION_PROVIDER],
})
export class CompletionModule extends CompletionModuleBase {}
