from memgen.influence.estimator.estimation import *  # noqa: F401,F403
