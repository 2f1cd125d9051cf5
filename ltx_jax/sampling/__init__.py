"""Sampling math that does not need the transformer: schedules, steps, guidance, noise, conditioning.

Counterparts: ltx_core `components/` (schedulers, noisers, diffusion_steps, guiders), `conditioning/`,
`tools.py`, and ltx_pipelines `utils/` (helpers, samplers, res2s, constants). The jitted loops over the
transformer are built on these.

  schedules     dev_sigmas (LTX2Scheduler), distilled_sigmas
  steps         euler_step, res2s_plan / res2s_substep / res2s_step
  guidance      GuiderParams, official defaults per version, guide, passes_needed, default_negative_prompt
  noise         noise_latent / noise_state (GaussianNoiser from explicit noise), JAX-RNG draws, SDE noise
  conditioning  LatentState, latent-index and keyframe conditioning, attention masks, post_process_latent
  positions     video / keyframe / audio positions, latent grid and audio token count
  samplers      (import directly) one evaluation: guidance passes as one batched forward + combination
  loops         (import directly) the jitted Euler / res_2s loops: `sample`, `distilled_sampler`, `dev_sampler`
"""

from ltx_jax.sampling.conditioning import (ConditioningError, LatentState, build_attention_mask, clear_conditioning,
                                           condition_by_keyframe, condition_by_latent_index, initial_state,
                                           patchify_video, post_process_latent, timesteps_from_mask,
                                           unpatchify_video)
from ltx_jax.sampling.guidance import (LTX_2_3_DEFAULTS, LTX_2_3_HQ_DEFAULTS, LTX_2_DEFAULTS, PASS_KINDS,
                                       GuiderParams, PipelineDefaults, default_negative_prompt, defaults_for_version,
                                       guide, pass_perturbations, passes_needed)
from ltx_jax.sampling.noise import (gaussian_noise, initial_noise, noise_latent, noise_state, normalize_sde_noise,
                                    sde_noise)
from ltx_jax.sampling.positions import (audio_positions, audio_token_count, keyframe_positions, latent_grid,
                                        video_positions)
from ltx_jax.sampling.schedules import (DEFAULT_SCHEDULER_TOKENS, DISTILLED_STAGE1_SIGMAS, DISTILLED_STAGE2_SIGMAS,
                                        dev_sigmas, distilled_sigmas)
from ltx_jax.sampling.steps import (RES2S_COLUMNS, Res2sPlan, euler_step, res2s_coefficients, res2s_plan,
                                    res2s_step, res2s_substep, to_velocity)

__all__ = [
    "LatentState", "ConditioningError", "initial_state", "condition_by_latent_index", "condition_by_keyframe",
    "build_attention_mask", "timesteps_from_mask", "post_process_latent", "clear_conditioning", "patchify_video",
    "unpatchify_video", "GuiderParams", "PipelineDefaults", "LTX_2_DEFAULTS", "LTX_2_3_DEFAULTS",
    "LTX_2_3_HQ_DEFAULTS", "PASS_KINDS", "defaults_for_version", "passes_needed", "pass_perturbations", "guide",
    "default_negative_prompt", "noise_latent", "noise_state", "gaussian_noise", "initial_noise",
    "normalize_sde_noise", "sde_noise", "latent_grid", "video_positions", "keyframe_positions", "audio_positions",
    "audio_token_count", "DEFAULT_SCHEDULER_TOKENS", "DISTILLED_STAGE1_SIGMAS", "DISTILLED_STAGE2_SIGMAS",
    "dev_sigmas", "distilled_sigmas", "euler_step", "to_velocity", "res2s_coefficients", "res2s_plan", "Res2sPlan",
    "RES2S_COLUMNS", "res2s_substep", "res2s_step",
]
