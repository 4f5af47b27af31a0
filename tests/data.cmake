ntk_unit_test(test_data)
