import matplotlib.pyplot as plt

years = [2018, 2019, 2020, 2021, 2022, 2023]
values = [80, 66, 13, 44, 49, 33]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.plot(years, values, marker="o", color="#DD8452")
ax.set_title("Visitors per year (thousands)")
ax.set_xlabel("Year")
plt.tight_layout()
plt.show()
