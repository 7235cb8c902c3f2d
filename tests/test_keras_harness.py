"""Keras' own layer-test harness (`run_layer_test`) on BNLSTM, with the
configurations of Keras' LSTM tests: building, weights and, on PyTorch,
the module parameters Keras tracks, eager and symbolic calls, masking,
regularization losses, serialization, a short `fit()`, a stateless call
and mixed precision, as Keras checks its own layers."""

from keras.src import testing

import pybnlstm

# kernel, recurrent_kernel, bias, gamma_x, gamma_h, gamma_c, beta_c.
TRAINABLE = 7
# Six statistics and their counts, as BatchNormalization's moving mean and
# variance: the reference sample and batch_quantum are state, not weights.
NON_TRAINABLE = 7


class BNLSTMHarnessTest(testing.TestCase):
    def check(self, init_kwargs, input_shape, expected_output_shape,
              **kwargs):
        self.run_layer_test(
            pybnlstm.BNLSTM,
            init_kwargs=init_kwargs,
            input_shape=input_shape,
            expected_output_shape=expected_output_shape,
            expected_num_trainable_weights=TRAINABLE,
            expected_num_non_trainable_weights=NON_TRAINABLE,
            supports_masking=True,
            **kwargs,
        )

    def test_dropouts_in_training(self):
        for kwargs in ({"units": 3, "dropout": 0.5},
                       {"units": 3, "dropout": 0.5, "recurrent_dropout": 0.5}):
            self.check(kwargs, (3, 2, 4), (3, 3),
                       call_kwargs={"training": True})

    def test_regularizers_and_sequences(self):
        self.check(
            {"units": 3, "return_sequences": True, "bias_regularizer": "l1",
             "kernel_regularizer": "l2", "recurrent_regularizer": "l2"},
            (3, 2, 4), (3, 2, 3), expected_num_losses=3,
        )

    def test_without_a_reference_sample(self):
        self.check(
            {"units": 2, "statistics_sample": 0, "go_backwards": True,
             "return_state": True},
            (2, 5, 3), ((2, 2), (2, 2), (2, 2)),
        )

    def test_implementation_and_use_cudnn_are_accepted(self):
        for kwargs in ({"implementation": 1}, {"implementation": 2},
                       {"use_cudnn": False}):
            self.check({"units": 2, **kwargs}, (2, 3, 4), (2, 2))
